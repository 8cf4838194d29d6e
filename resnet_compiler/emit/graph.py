"""The graph as node-link JSON (for tools) and DOT (for Graphviz)."""

from __future__ import annotations

import json
from typing import Any

import networkx as nx


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


def to_dot(graph: nx.DiGraph) -> str:
    """Graphviz DOT with one box per op, labelled with op and output shape."""
    lines = [f"digraph {_quote(graph.graph['name'])} {{", "  rankdir=TB;",
             '  node [shape=box, fontname="Helvetica", fontsize=10];']
    for node, d in graph.nodes(data=True):
        shape = "x".join(map(str, d["shape"]))
        # node ids and op names are validated identifiers, so only the quoting of the id matters
        lines.append(f'  {_quote(node)} [label="{node}\\n{d["op"]} -> {shape}"];')
    for a, b, e in graph.edges(data=True):
        style = ' [style=dashed, label="shortcut"]' if e.get("role") == "shortcut" else ""
        lines.append(f"  {_quote(a)} -> {_quote(b)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
