"""The graph as node-link JSON (for tools) and DOT (for Graphviz)."""

from __future__ import annotations

import json
from typing import Any

import networkx as nx

from ..errors import UsageError
from ..messages import did_you_mean
from ..ops import REGISTRY


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_json(graph: nx.DiGraph) -> str:
    """networkx node-link JSON: the whole graph, nothing left out."""
    data = nx.node_link_data(graph, edges="edges")
    return json.dumps(_plain(data), indent=1, sort_keys=True) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: nx.DiGraph, blocks: dict[str, str] | None = None,
           only: str | None = None) -> str:
    """Graphviz DOT: one box per value (op and output shape), each block a labelled cluster
    (`blocks`: block id -> class name) so its paths sit side by side; split parts and shortcuts
    are labelled edges. `only`: just the block (or stage) with that id, and its input."""
    blocks = blocks or {}
    keep = [n for n in graph.nodes if only is None or n == only or n.startswith(only + ".")]
    if only is not None and not keep:
        raise UsageError(f"no block or node {only!r} in the network{did_you_mean(only, blocks)}")
    kept = set(keep)
    lines = [f"digraph {_quote(graph.graph['name'])} {{", "  rankdir=TB;",
             '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    members: dict[str, list[str]] = {}
    for node in keep:
        owner = next((b for b in blocks if node.startswith(b + ".")), "")
        members.setdefault(owner, []).append(node)
    for owner, nodes in members.items():
        indent = "  "
        if owner:
            lines += [f"  subgraph {_quote('cluster_' + owner)} {{",
                      f"    label={_quote(f'{owner} ({blocks[owner]})')};",
                      '    style=rounded; color=gray60; fontname="Helvetica"; fontsize=11;']
            indent = "    "
        for node in nodes:
            d = graph.nodes[node]
            short = node[len(owner) + 1:] if owner else node
            dims = [str(v) for v in d["shape"]]
            if REGISTRY[d["op"]].has_parts:  # a split: its parts' channels
                dims[0] = "+".join(str(s[0]) for s in REGISTRY[d["op"]].part_shapes(d, d["shape"]))
            label = f"{short}\n{d['op']} {'x'.join(dims)}"
            lines.append(f"{indent}{_quote(node)} [label={_quote(label)}];")
        if owner:
            lines.append("  }")
    outside = set()
    for a, b, e in graph.edges(data=True):
        if b not in kept:
            continue
        if a not in kept and a not in outside:
            outside.add(a)
            lines.append(f"  {_quote(a)} [style=dashed];")
        uses = e.get("uses", [[e.get("index", 0), e.get("part")]])
        parts = [f"[{part}]" for _, part in uses if part is not None]
        attrs = []
        if e.get("role") == "shortcut":
            attrs += ["style=dashed", 'label="shortcut"']
        elif parts:
            attrs.append(f"label={_quote(' '.join(parts))}")
        lines.append(f"  {_quote(a)} -> {_quote(b)}{' [' + ', '.join(attrs) + ']' if attrs else ''};")
    lines.append("}")
    return "\n".join(lines) + "\n"
