"""`defaults.aa` in the stem, as timm's `aa_layer` has it: the stem's strided max pool becomes
`aa: blur` a stride-1 max pool and a strided blur pool (`maxpool.0`, `maxpool.1`), and `aa: avg`
a 2x2 average pool (timm's `aa_layer(2)`). Blocks get the layer through their `anti_alias` slot;
the stem has none, so its data is rewritten before validation."""

from __future__ import annotations

from typing import Any

from .load import Document, PathT


def _strided_maxpool(op: Any) -> bool:
    if not isinstance(op, dict) or op.get("op") != "maxpool":
        return False
    stride = op.get("stride", op.get("kernel"))
    return isinstance(stride, int) and not isinstance(stride, bool) and stride > 1 \
        and isinstance(op.get("name"), str)


def _replacement(op: dict[str, Any], aa: str) -> list[dict[str, Any]]:
    name, stride = op["name"], op.get("stride", op.get("kernel"))
    if aa == "avg":
        return [{"op": "avgpool", "name": name, "kernel": stride, "stride": stride}]
    kept = {k: v for k, v in op.items() if k not in ("name", "stride")}
    return [{**kept, "name": f"{name}.0", "stride": 1},
            {"op": "blurpool", "name": f"{name}.1", "stride": stride}]


def anti_aliased_stem(doc: Document) -> Document:
    """`doc` with its stem's strided max pools anti-aliased when `defaults.aa` is avg or blur."""
    data = doc.data
    if not isinstance(data, dict):
        return doc
    defaults, stem = data.get("defaults"), data.get("stem")
    aa = defaults.get("aa") if isinstance(defaults, dict) else None
    if aa not in ("avg", "blur") or not isinstance(stem, list) \
            or not any(_strided_maxpool(op) for op in stem):
        return doc
    new_stem: list[Any] = []
    origin: list[int] = []  # the old index of each new op
    for i, op in enumerate(stem):
        ops = _replacement(op, aa) if _strided_maxpool(op) else [op]
        new_stem += ops
        origin += [i] * len(ops)
    lines: dict[PathT, int] = {p: v for p, v in doc.lines.items() if p[:1] != ("stem",)}
    sources: dict[PathT, str] = {p: v for p, v in doc.sources.items() if p[:1] != ("stem",)}
    for new, old in enumerate(origin):
        where = ("stem", old)
        lines[("stem", new)] = doc.line_of(where) or 0
        if doc.sources:
            sources[("stem", new)] = doc.source_of(where)
    lines[("stem",)] = doc.line_of(("stem",)) or 0
    if doc.sources:
        sources[("stem",)] = doc.source_of(("stem",))
    return Document({**data, "stem": new_stem}, doc.source, lines, sources, doc.libraries)
