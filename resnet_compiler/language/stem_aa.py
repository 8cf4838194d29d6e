"""`defaults.aa` in the stem, as timm's `aa_layer` has it: the stem's strided max pool becomes
`aa: blur` a stride-1 max pool and a strided blur pool (`maxpool.0`, `maxpool.1`), and `aa: avg`
a 2x2 average pool (timm's `aa_layer(2)`). Blocks get the layer through their `anti_alias` slot;
the stem has none, so its data is rewritten before validation."""

from __future__ import annotations

from typing import Any

from ..ops import SPEC_OPS
from .load import Document, PathT


def _replacement(op: Any, aa: str) -> list[Any] | None:
    """What the op table says a stem op becomes under `aa` (a strided max pool: anti-aliased)."""
    kind = op.get("op") if isinstance(op, dict) else None
    return SPEC_OPS[kind].stem_anti_alias(op, aa) if kind in SPEC_OPS else None


def anti_aliased_stem(doc: Document) -> Document:
    """`doc` with its stem's strided max pools anti-aliased when `defaults.aa` is avg or blur."""
    data = doc.data
    if not isinstance(data, dict):
        return doc
    defaults, stem = data.get("defaults"), data.get("stem")
    aa = defaults.get("aa") if isinstance(defaults, dict) else None
    if aa not in ("avg", "blur") or not isinstance(stem, list) \
            or not any(_replacement(op, aa) for op in stem):
        return doc
    new_stem: list[Any] = []
    origin: list[int] = []  # the old index of each new op
    for i, op in enumerate(stem):
        ops = _replacement(op, aa) or [op]
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
