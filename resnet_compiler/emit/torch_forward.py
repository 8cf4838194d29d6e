"""The generated model's forward methods and feature_info: timm's forward_features (stem,
stages and head.pre), forward_head (pool and classifier, `pre_logits` stopping before the
classifier), and forward, which with `outputs:` splits the calls at the returned module paths
(`self.layer2[:2](x)`, `self.stages[1].blocks[3](x)`) and collects the feature maps in a list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..ir.templates import Layout
from ..ops import REGISTRY
from .code import INDENT, Entry, indented, tree

if TYPE_CHECKING:  # the emitters read the IR or a networkx graph alike
    import networkx as nx


def _leaves(child: Any, path: str) -> set[str]:
    if isinstance(child[0], str):
        return {path}
    return {leaf for key, sub in child for leaf in _leaves(sub, f"{path}.{key}")}


def _stage_calls(access: str, path: str, depth: int, marks: dict[str, str]) -> list[str]:
    """A stage's blocks called in runs that end at the marked blocks."""
    lines, start = [], 0
    marked = [j for j in range(depth) if f"{path}.{j}" in marks]
    for end in [*marked, depth - 1] if not marked or marked[-1] != depth - 1 else marked:
        if start > end:
            break
        stop = end + 1 if end < depth - 1 else ""
        part = f"[{start}]" if start == end else f"[{start or ''}:{stop}]" if start or stop else ""
        lines.append(f"x = {access}{part}(x)")
        lines += [marks[f"{path}.{end}"]] if f"{path}.{end}" in marks else []
        start = end + 1
    return lines


def _calls(tree: list[tuple[str, Any]], wanted: set[str], marks: dict[str, str],
           stages: dict[str, int], access: str = "self", prefix: str = "") -> list[str]:
    """Forward lines for the modules of `tree` at the paths in `wanted`, each container called
    whole unless it holds only some of them or a marked path; a marked path's line follows it."""
    lines: list[str] = []
    for key, child in tree:
        path = prefix + key
        here = f"{access}[{key}]" if key.isdigit() else f"{access}.{key}"
        leaves = _leaves(child, path)
        if not leaves & wanted:
            continue
        if leaves <= wanted and not any(m.startswith(path + ".") for m in marks):
            lines.append(f"x = {here}(x)")
        elif isinstance(child[0], str):
            lines += _stage_calls(here, path, stages[path], marks)
        else:
            lines += _calls(child, wanted, marks, stages, here, path + ".")
        if path in marks:
            lines.append(marks[path])
    return lines


def reductions(graph: nx.DiGraph) -> dict[str, int]:
    """Each node's stride relative to the input (the product of the strides on its way)."""
    out: dict[str, int] = {}
    for node, d in graph.nodes(data=True):
        preds = graph.pred[node]
        first = min(preds, key=lambda p: preds[p].get("index", 0)) if preds else None
        stride = d.get("stride", 1)
        out[node] = (out[first] if first else 1) * (stride if isinstance(stride, int) else 1)
    return out


def feature_info(graph: nx.DiGraph, layout: Layout) -> list[str]:
    """The class attribute listing the returned feature maps (or, without `outputs:`, every
    stage's), with channels and stride to the input, as timm's feature_info (a tuple: a class
    attribute stays immutable)."""
    outputs = graph.graph.get("outputs") or {}
    if outputs:
        pairs = list(outputs.items())
        note = "# the feature maps forward() returns: channels and stride to the input (timm)"
    else:
        stage_of_last = {b.id: s.name for s in layout.stages for b in s.blocks[-1:]}
        last = {}
        for node in graph.nodes:
            block = ".".join(node.split(".")[:-1])
            while block and block not in stage_of_last:
                block = ".".join(block.split(".")[:-1])
            if block:
                last[stage_of_last[block]] = node
        pairs = [(s.name, last[s.name]) for s in layout.stages]
        note = "# each stage's feature map: channels and stride to the input (timm's feature_info)"
    reduction = reductions(graph)
    items = [f'{INDENT}{{"module": "{name}", "num_chs": {graph.nodes[node]["shape"][0]},'
             f' "reduction": {reduction[node]}}},' for name, node in pairs]
    return [note, "feature_info = (", *items, ")"]


def forward_methods(graph: nx.DiGraph, layout: Layout, entries: list[Entry],
                     head_from: int) -> list[str]:
    """forward_features (to the last feature map), forward_head (pool, classifier) and forward
    (both; with `outputs:`, the listed feature maps in order, then the logits if there is a head)."""
    modules = tree(entries)
    stages = {s.name: len(s.blocks) for s in layout.stages}
    head = entries[head_from:]
    tops = layout.head[len(layout.head) - len(head):]
    if layout.pre_logits is not None:  # a head list says where pre_logits stops
        classifier = layout.pre_logits - (len(layout.head) - len(head))
    else:
        classifier = max((i for i, top in enumerate(tops)
                          if top.module is None and REGISTRY[top.kind].classifier),
                         default=len(head))
    features = {path for path, _ in entries[:head_from]}
    pooling = {path for path, _ in head[:classifier]}
    tail = {path for path, _ in head[classifier:]}
    t = "torch.Tensor"
    lines = [f"def forward_features(self, x: {t}) -> {t}:",
             INDENT + '"""The last feature map, before pooling (as in timm)."""',
             *indented(_calls(modules, features, {}, stages), 1), f"{INDENT}return x", ""]
    if head:
        # a classifier reading the pooled map (a 1x1 conv): pre_logits features are vectors
        flat = "x.flatten(1)" if classifier < len(head) and layout.pre_logits is None and len(
            _input_shape(graph, tops[classifier].node_id)) == 3 else "x"
        lines += [f"def forward_head(self, x: {t}, pre_logits: bool = False) -> {t}:",
                  f'{INDENT}"""Pooling and classifier; pre_logits: the pooled features alone."""',
                  *indented(_calls(modules, pooling, {}, stages), 1), f"{INDENT}if pre_logits:",
                  f"{INDENT * 2}return {flat}", *indented(_calls(modules, tail, {}, stages), 1),
                  f"{INDENT}return x", ""]
    else:
        lines += [f"def forward_head(self, x: {t}, pre_logits: bool = False) -> {t}:",
                  f'{INDENT}"""No head (head: none): the feature map as it is."""',
                  f"{INDENT}return x", ""]
    outputs = graph.graph.get("outputs") or {}
    if not outputs:
        return [*lines, f"def forward(self, x: {t}) -> {t}:", f"{INDENT}x = self.forward_features(x)",
                f"{INDENT}x = self.forward_head(x)", f"{INDENT}return x"]
    marks = {}
    for name in outputs:
        path = name
        for stage in stages:
            if name.startswith(stage + "."):
                path = ".".join(name.split(".")[: stage.count(".") + 2])  # the block
        marks[path] = "features.append(x)"
    body = _calls(modules, features, marks, stages)
    if head:
        body.append("features.append(self.forward_head(x))")
    else:  # nothing after the last listed feature map is needed
        body = body[: max(i for i, line in enumerate(body) if line == marks[path]) + 1]
    returned = ", ".join(outputs) + (", logits" if head else "")
    return [*lines, f"def forward(self, x: {t}) -> list[{t}]:",
            f'{INDENT}"""[{returned}]: the feature maps of `outputs:` in order'
            + (', then the logits."""' if head else '."""'),
            f"{INDENT}features = []", *indented(body, 1), f"{INDENT}return features"]


def _input_shape(graph: nx.DiGraph, node: str) -> tuple[int, ...]:
    (source,) = graph.pred[node]
    return tuple(graph.nodes[source]["shape"])


def keep_inputs(graph: nx.DiGraph, layout: Layout) -> frozenset[str]:
    """Top-level ops whose input is a returned feature map (they must not overwrite it)."""
    returned = set((graph.graph.get("outputs") or {}).values())
    return frozenset(top.node_id for top in (*layout.stem, *layout.head)
                     if top.module is None  # a module's class never writes into its input
                     and any(p in returned for p in graph.pred[top.node_id]))


def ends(gg: dict[str, Any]) -> str:
    """What the network returns, for docstrings: its classes, or its feature maps."""
    outputs = list(gg.get("outputs") or ())
    classes = f"{gg['num_classes']} classes" if gg["num_classes"] is not None else ""
    if not outputs:
        return classes
    return f"features {', '.join(outputs)}" + (f" and {gg['num_classes']} logits" if classes else "")


def head_size(layout: Layout) -> int:
    """How many head entries follow the feature map (pre ops excluded): from the global pool on."""
    roles = [REGISTRY[top.kind].role if top.module is None else "" for top in layout.head]
    return len(roles) - roles.index("global_pool") if "global_pool" in roles else 0


__all__ = ["ends", "feature_info", "forward_methods", "head_size", "keep_inputs", "reductions"]
