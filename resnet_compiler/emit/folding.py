"""Which ops belong to which block, what feeds each block, and runs of identical blocks: the
structure the HTML page and the DOT drawing fold a network by.

A stage of 36 bottlenecks is one strided block and 35 that are the same; pictures show that as
two boxes, the second marked x35. Blocks are the same when the compiler built them from the same
class with the same constructor arguments and position values on an input of the same shape,
which fixes every op, attribute and shape inside them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from ..ir.templates import BlockInstance, Layout, owning_block


@dataclass(frozen=True)
class Run:
    """`count` consecutive blocks of a stage, from `start`, that are all the same."""

    start: int
    count: int


@dataclass(frozen=True)
class Membership:
    """Each block's node ids (in graph order) and the ids outside it that it reads, in order of
    first use; nodes outside every block (stem, head) are `top`."""

    nodes: dict[str, list[str]]
    sources: dict[str, list[str]]
    top: list[str]


def membership(graph: Any, layout: Layout) -> Membership:
    """Nodes by block (a node belongs to the block whose id prefixes it; block ids may contain
    dots, as `s1.b1`), for a networkx graph or the IR."""
    ids = {b.id for stage in layout.stages for b in stage.blocks}
    nodes: dict[str, list[str]] = {b: [] for b in ids}
    top: list[str] = []
    owner: dict[str, str] = {}
    for node in graph.nodes:
        head = owning_block(node, ids)
        if head:
            nodes[head].append(node)
            owner[node] = head
        else:
            top.append(node)
    sources: dict[str, list[str]] = {b: [] for b in ids}
    for block, members in nodes.items():
        seen = sources[block]
        for node in members:
            for src in graph.pred[node]:
                if owner.get(src) != block and src not in seen:
                    seen.append(src)
    return Membership(nodes, sources, top)


def block_key(block: BlockInstance, input_shape: Sequence[int]) -> tuple:
    """What makes two blocks the same: class, constructor arguments, position values, and the
    shape of what they read."""
    return (block.class_name, block.in_channels, block.channels, block.stride,
            _frozen(block.params), _frozen(block.position), tuple(input_shape))


def runs(keys: Sequence[Hashable]) -> list[Run]:
    """The maximal runs of equal consecutive keys."""
    out: list[Run] = []
    for i, key in enumerate(keys):
        if out and keys[out[-1].start] == key:
            out[-1] = Run(out[-1].start, out[-1].count + 1)
        else:
            out.append(Run(i, 1))
    return out


def stage_runs(graph: Any, layout: Layout, member: Membership,
               extra: dict[str, Hashable] | None = None) -> dict[str, list[Run]]:
    """Runs of identical blocks in each stage; `extra` (block id -> value) must match too (a
    diff page keeps blocks apart whose nodes are marked differently)."""
    out = {}
    for stage in layout.stages:
        keys = []
        for b in stage.blocks:
            src = member.sources[b.id]
            shape = graph.nodes[src[0]]["shape"] if src else ()
            keys.append((block_key(b, shape), len(member.nodes[b.id]),
                         (extra or {}).get(b.id)))
        out[stage.name] = runs(keys)
    return out


def _frozen(value: Any) -> Hashable:
    if isinstance(value, dict) or hasattr(value, "items"):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value
