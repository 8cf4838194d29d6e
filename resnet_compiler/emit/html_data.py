"""What the HTML page shows, as plain JSON-ready data: every op with its attributes, shape and
costs; the stem, stages, blocks and runs of identical blocks it folds into; a drawing per block
wiring; where each part was written in the spec; and the generated PyTorch code of each block.

The page's script only places boxes and fills in text from this, so everything a test asserts
about the picture (paths, counts, shapes, costs) is decided here, from the compiled graph.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..ir.templates import BlockTemplate, Layout, StageLayout
from ..language.load import format_path
from ..messages import format_shape
from ..ops import REGISTRY
from .folding import Membership, Run, membership, stage_runs
from .html_layout import layout_of

if TYPE_CHECKING:
    from ..compiler import CompiledNetwork

DERIVED = ("op", "shape", "tensors", "params", "macs", "acts")
MAX_SPEC_LINE = 160


def network_data(net: CompiledNetwork, marks: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The page's data for one network; `marks`: node -> same|changed|added|removed (a diff)."""
    ir, layout = net.ir, net.layout
    member = membership(ir, layout)
    parts = _parts(ir, layout, member)
    # the page's node order: section by section, block by block, so every group is a range
    order = [n for kind, what in parts for n in (
        what if kind == "ops" else [x for b in _stage_layout(layout, what).blocks
                                    for x in member.nodes[b.id]])]
    index = {node: i for i, node in enumerate(order)}
    outputs = ir.graph.get("outputs") or {}
    feature_of = {node: name for name, node in outputs.items()}
    nodes = [_node(node, ir.nodes[node], feature_of.get(node), (marks or {}).get(node))
             for node in order]
    drawings = _Drawings()
    code = _CodeChunks(net.to_torch_source())
    refs = _SpecRefs(net)
    model_class = code.model_class()

    def group(ids: list[str]) -> dict[str, Any]:
        """The drawing of these nodes (inputs first) and what feeds it."""
        inside = {n: k for k, n in enumerate(ids)}
        sources: list[str] = []
        edges, meta = [], []
        for k, node in enumerate(ids):
            for src, e in ir.pred[node].items():
                if src in inside:
                    s = inside[src]
                else:
                    if src not in sources:
                        sources.append(src)
                    s = -sources.index(src) - 1
                for _, part in e.get("uses", [[e.get("index", 0), e.get("part")]]):
                    edges.append((s, k))
                    meta.append([e.get("role", "input"), part])
        return {"draw": drawings.index(len(sources), len(ids), edges, meta),
                "ins": [index[s] for s in sources], "first": index[ids[0]] if ids else 0,
                "n": len(ids)}

    extra = None
    if marks:
        extra = {b: tuple(marks.get(n, "same") for n in ids) for b, ids in member.nodes.items()}
    runs = stage_runs(ir, layout, member, extra)
    sections: list[dict[str, Any]] = []
    for kind, what in parts:
        if kind == "stage":
            sections.append(_stage(net, what, member, group, refs, runs[what]))
            continue
        title = "stem" if not sections else "head" if _after_stages(sections) else "ops"
        sections.append({"kind": "ops", "title": title, **group(what),
                         "refs": [refs.top(n) for n in what], "code": model_class})
    return {"name": net.name, "input": format_shape(net.input_shape),
            "classes": ir.graph.get("num_classes"), "params": net.total_params,
            "macs": net.total_macs, "acts": ir.graph.get("total_acts", 0),
            "preprocessing": _preprocessing(ir.graph), "version": ir.graph.get("compiler_version"),
            "sha": ir.graph.get("spec_sha256", ""), "outputs": outputs,
            "output": ir.graph.get("output"), "source": refs.display(refs.root_source()),
            "nodes": nodes, "sections": sections, "drawings": drawings.items,
            "code": code.chunks, "deps": code.deps}


def _parts(ir: Any, layout: Layout, member: Membership) -> list[tuple[str, Any]]:
    """The network top to bottom: ("ops", node ids) for each stretch of nodes outside every
    block (the stem, the head), ("stage", name) where a stage's first node comes."""
    owner = {n: b for b, ids in member.nodes.items() for n in ids}
    stage_of = {b.id: stage.name for stage in layout.stages for b in stage.blocks}
    parts: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for node in ir.nodes:
        block = owner.get(node)
        if block is None:
            if parts and parts[-1][0] == "ops":
                parts[-1][1].append(node)
            else:
                parts.append(("ops", [node]))
        elif stage_of[block] not in seen:
            seen.add(stage_of[block])
            parts.append(("stage", stage_of[block]))
    return parts


def _stage_layout(layout: Layout, name: str) -> StageLayout:
    return next(s for s in layout.stages if s.name == name)


def _after_stages(sections: list[dict[str, Any]]) -> bool:
    return any(s["kind"] == "stage" for s in sections)


def _stage(net: CompiledNetwork, name: str, member: Membership, group: Any, refs: _SpecRefs,
           runs: list[Run]) -> dict[str, Any]:
    layout = net.layout
    i, stage = next((i, s) for i, s in enumerate(layout.stages) if s.name == name)
    blocks = []
    for b in stage.blocks:
        ids = member.nodes[b.id]
        template = layout.classes.get(b.class_name)
        blocks.append({"id": b.id, "cls": b.class_name, **group(ids),
                       "kind": template.kind if template else "",
                       "shortcut": _shortcut_names(template),
                       "args": {"in_channels": b.in_channels, "channels": b.channels,
                                "stride": b.stride, **json_ready(dict(b.params))},
                       "defined": refs.block_definition(template.kind) if template else None})
    return {"kind": "stage", "name": name, "index": i, "blocks": blocks,
            "runs": [[r.start, r.count] for r in runs], "refs": refs.stage(i)}


def _shortcut_names(t: BlockTemplate | None) -> list[str]:
    """The projection's op names (`downsample.0`): the page draws them as the shortcut path."""
    return [op.name for op in t.projection] if t else []


def _node(name: str, d: Mapping[str, Any], feature: str | None, mark: str | None) -> list[Any]:
    """[path, op, shape, params, MACs, attributes, state_dict tensors, feature output name,
    diff mark, op family (the ops/ module it is defined in: conv, norm, act, ...), part shapes]"""
    op = REGISTRY[d["op"]]
    attrs = {k: json_ready(v) for k, v in d.items() if k not in DERIVED}
    tensors = {k: format_shape(v) for k, v in d.get("tensors", {}).items()}
    parts = [format_shape(s) for s in op.part_shapes(d, d["shape"])] if op.has_parts else None
    return [name, d["op"], format_shape(d["shape"]), d.get("params", 0), d.get("macs", 0), attrs,
            tensors, feature, mark, _family(d["op"]), parts]


@cache
def _family(kind: str) -> str:
    return type(REGISTRY[kind]).__module__.rpartition(".")[2]


def json_ready(value: Any) -> Any:
    """Attribute values as JSON has them (tuples as lists, other objects as text)."""
    if isinstance(value, (tuple, list)):
        return [json_ready(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _preprocessing(graph: Mapping[str, Any]) -> str:
    from ..language.preprocessing import Preprocessing
    try:
        return Preprocessing.from_json(graph["preprocessing"]).describe()
    except (KeyError, UsageError):  # a header line: the page is drawn without it
        return ""


class _Drawings:
    """Distinct wirings, each laid out once; blocks refer to them by index."""

    def __init__(self) -> None:
        self.items: list[list[Any]] = []
        self._seen: dict[Any, int] = {}

    def index(self, n_in: int, n: int, edges: list[tuple[int, int]], meta: list[list[Any]]) -> int:
        key = (n_in, n, tuple(edges), tuple((r, p) for r, p in meta))
        if key not in self._seen:
            self._seen[key] = len(self.items)
            self.items.append([*layout_of(n_in, n, edges).to_json(), meta])
        return self._seen[key]


_TOP = re.compile(r"^(?:class|def) (\w+)", re.M)


class _CodeChunks:
    """The generated source cut into its top-level classes and functions, and for each the ones
    it uses, so a block's code is shown with the module classes it is built from."""

    def __init__(self, source: str):
        starts = [(m.start(), m.group(1)) for m in _TOP.finditer(source)]
        self.chunks: dict[str, str] = {}
        self.order: list[str] = []
        for k, (at, name) in enumerate(starts):
            end = starts[k + 1][0] if k + 1 < len(starts) else len(source)
            self.chunks[name] = source[at:end].rstrip() + "\n"
            self.order.append(name)
        words = re.compile(r"\b(" + "|".join(map(re.escape, self.order)) + r")\b") \
            if self.order else None
        self.deps: dict[str, list[str]] = {}
        for name in self.order:
            used = set(words.findall(self.chunks[name])) - {name} if words else set()
            self.deps[name] = [n for n in self.order if n in used]

    def model_class(self) -> list[str]:
        """The last class is the network's own (stem and head live in it)."""
        classes = [n for n in self.order if self.chunks[n].startswith("class ")]
        return classes[-1:]



class _SpecRefs:
    """Where a part of the network was written: `file:line: spec.path` and that line's text."""

    def __init__(self, net: CompiledNetwork):
        self.doc = net.document
        self.stem_names: list[str | None] = []
        self.head_names: list[str | None] = []
        data = self.doc.data if self.doc is not None and isinstance(self.doc.data, dict) else {}
        stem = data.get("stem")
        if isinstance(stem, list):
            self.stem_names = [s.get("name") if isinstance(s, dict) else None for s in stem]
        self.top_ids = {t.node_id: ("stem", k) for k, t in enumerate(net.layout.stem)}
        self.top_ids.update({t.node_id: ("head", k) for k, t in enumerate(net.layout.head)})
        self.stem_len = len(self.stem_names)
        self.layout_stem_len = len(net.layout.stem)

    def root_source(self) -> str:
        return self.doc.source if self.doc is not None else ""

    @staticmethod
    def display(source: str) -> str:
        """A file under the working folder by its relative path, others as they are."""
        try:
            p = Path(source)
            if p.is_absolute():
                rel = os.path.relpath(p)
                return source if rel.startswith("..") else rel
        except (ValueError, OSError):
            pass
        return source

    def ref(self, path: tuple[str | int, ...], label: str) -> str | None:
        """The line that wrote `path` (or its nearest written ancestor)."""
        if self.doc is None:
            return None
        return self._format(self.doc.source_of(path), self.doc.line_of(path), label)

    def under(self, path: tuple[str | int, ...], label: str) -> list[str]:
        """Every line that wrote a value at or under `path`: a stage may come from a base
        (`extends:`), be patched by the spec and by `--set`, each line with the keys it set."""
        if self.doc is None:
            return []
        n = len(path)
        places: dict[tuple[str, int], list[str]] = {}
        for p, line in self.doc.lines.items():
            if p[:n] == path:
                keys = places.setdefault((self.doc.source_of(p), line), [])
                if len(p) > n:
                    keys.append(format_path(p[n:]))
        if not places:
            found = self.ref(path, label)
            return [found] if found else []
        out = []
        for (source, line), keys in places.items():  # the keys, where more than one line wrote
            shown = [k for k in dict.fromkeys(keys) if "." not in k and "[" not in k] or keys
            what = ": " + ", ".join(shown) if shown and len(places) > 1 else ""
            out.append(self._format(source, line, label + what))
        return [r for r in out if r]

    def _format(self, source: str, line: int | None, label: str) -> str | None:
        if not line:
            return f"{self.display(source)}: {label}" if source else None
        text = _line_text(source, line)
        return f"{self.display(source)}:{line}: {label}" + (f"    {text}" if text else "")

    def stage(self, i: int) -> list[str]:
        return self.under(("stages", i), f"stages[{i}]")

    def top(self, node: str) -> list[str]:
        owner = next((t for t in self.top_ids if node == t or node.startswith(t + ".")), None)
        if owner is None:
            return [r for r in [self.ref(("input",), "input")] if r] if node == "input" else []
        part, k = self.top_ids[owner]
        if part == "stem":
            if owner in self.stem_names:
                k = self.stem_names.index(owner)
            elif self.stem_len != self.layout_stem_len:
                return [r for r in [self.ref(("stem",), "stem")] if r]
            return self.under(("stem", k), f"stem[{k}] ({owner})")
        return self.under(("head",), f"head ({owner})")

    def block_definition(self, kind: str) -> str | None:
        """Where the block's class is defined: the spec's own `blocks:`, or the built-in
        library file that has it."""
        if self.doc is not None and ("blocks", kind) in self.doc.lines:
            return self.ref(("blocks", kind), f"blocks.{kind}")
        found = _builtin_block_lines().get(kind)
        if found is None:
            return None
        path, line = found
        return f"{self.display(str(path))}:{line}: blocks.{kind}"


@lru_cache(maxsize=64)
def _line_text(source: str, line: int) -> str:
    """Line `line` of a spec file (stripped, cut), or '' where it cannot be read."""
    try:
        p = Path(source)
        if not p.is_file() or p.stat().st_size > (1 << 21):
            return ""
        lines = p.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    if not 0 < line <= len(lines):
        return ""
    text = lines[line - 1].strip()
    return text if len(text) <= MAX_SPEC_LINE else text[:MAX_SPEC_LINE - 3] + "..."


@lru_cache(maxsize=1)
def _builtin_block_lines() -> dict[str, tuple[Path, int]]:
    """kind -> (file, line) of each block in the built-in library's `blocks:` mappings."""
    from ..language.library import builtin_library_files
    out: dict[str, tuple[Path, int]] = {}
    key = re.compile(r"^  ([A-Za-z_]\w*):")
    for path in builtin_library_files().values():
        in_blocks = False
        for n, text in enumerate(path.read_text().splitlines(), 1):
            if text and not text.startswith((" ", "#")):
                in_blocks = text.startswith("blocks:")
                continue
            m = key.match(text) if in_blocks else None
            if m:
                out.setdefault(m.group(1), (path, n))
    return out
