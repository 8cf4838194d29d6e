"""The graph as node-link JSON (for tools) and DOT (for Graphviz)."""

from __future__ import annotations

import json
from typing import Any

import networkx as nx

from ..errors import UsageError
from ..ir.templates import Layout
from ..messages import did_you_mean
from ..ops import REGISTRY
from .folding import Membership, membership, stage_runs


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


def to_dot(graph: nx.DiGraph, layout: Layout, only: str | None = None, fold: bool = True) -> str:
    """Graphviz DOT: one box per value (op and output shape), each block a labelled cluster so
    its paths sit side by side; split parts and shortcuts are labelled edges. `fold`: a run of
    identical blocks is drawn once, its cluster labelled xN, as the HTML page folds it. `only`:
    just the block (or stage) with that id, and its input."""
    blocks = {b.id: b.class_name for stage in layout.stages for b in stage.blocks}
    keep = [n for n in graph.nodes if only is None or n == only or n.startswith(only + ".")]
    if only is not None and not keep:
        raise UsageError(f"no block or node {only!r} in the network{did_you_mean(only, blocks)}")
    member = membership(graph, layout)
    alias, titles = {}, {b: f"{b} ({cls})" for b, cls in blocks.items()}
    if fold and not any(only == b or (only or "").startswith(b + ".") for b in blocks):
        alias, folded = _folded_aliases(graph, layout, member)
        titles.update(folded)
    kept = {n for n in keep if n not in alias}
    lines = [f"digraph {_quote(graph.graph['name'])} {{", "  rankdir=TB;",
             '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    members: dict[str, list[str]] = {}
    owner_of = {n: b for b, ns in member.nodes.items() for n in ns}
    for node in keep:
        if node in kept:
            members.setdefault(owner_of.get(node, ""), []).append(node)
    for owner, nodes in members.items():
        indent = "  "
        if owner:
            lines += [f"  subgraph {_quote('cluster_' + owner)} {{",
                      f"    label={_quote(titles[owner])};",
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
    outside: set[str] = set()
    drawn: set[tuple[str, str]] = set()
    for a0, b, e in graph.edges(data=True):
        if b not in kept:
            continue
        a = alias.get(a0, a0)
        if (a, b) in drawn:
            continue
        drawn.add((a, b))
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


def _folded_aliases(graph: nx.DiGraph, layout: Layout,
                    member: Membership) -> tuple[dict[str, str], dict[str, str]]:
    """For each run of identical blocks: every node of its second and later blocks -> the node
    of the same name in its first block, and the first block's cluster title (`xN`)."""
    alias: dict[str, str] = {}
    titles: dict[str, str] = {}
    for stage in layout.stages:
        for run in stage_runs(graph, layout, member)[stage.name]:
            if run.count == 1:
                continue
            first, last = stage.blocks[run.start], stage.blocks[run.start + run.count - 1]
            titles[first.id] = f"{first.id} … {last.id} ({first.class_name}) x{run.count}"
            for b in stage.blocks[run.start + 1:run.start + run.count]:
                for node in member.nodes[b.id]:
                    alias[node] = first.id + node[len(b.id):]
    return alias, titles
