"""Typed code templates that travel beside the graph: what the PyTorch emitter needs to print
readable classes (one per block template) and what the weights need to know about blocks.

The graph holds the network's data (ops, shapes, counts); these objects hold its structure as
code: block classes with their expressions parsed once, and the order of stem, stages and head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .expr import Expr, Value


@dataclass(frozen=True)
class OpTemplate:
    """One op of a block or the stem/head: its module name, kind and attribute sources (sizes as
    expression text, flags and floats as values), the size expressions parsed, its `when`, and,
    in a block, the values it reads (`x` is the block's input, `spx[1]` part 1 of split `spx`)."""

    name: str
    kind: str
    sources: Mapping[str, Any]
    exprs: Mapping[str, Expr]
    when: Expr | None = None
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlockTemplate:
    """A residual block class: branch (a small graph of named values, in an order where each
    value is defined before it is read), projection shortcut (used when the shape changes), add,
    then `post`. `params` are the constructor's keyword defaults; `output` is the branch value
    that meets the shortcut."""

    class_name: str
    kind: str
    shortcut: str
    params: Mapping[str, Value]
    vars: tuple[tuple[str, Expr], ...]
    out_channels: Expr
    branch: tuple[OpTemplate, ...]
    projection: tuple[OpTemplate, ...]
    post: tuple[OpTemplate, ...]
    projection_from: str | None = None
    output: str = ""
    last_norm: str | None = None
    shared_key: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)
    position: tuple[str, ...] = ()  # position values (block_index, dilation, ...) it reads

    def ops(self) -> tuple[OpTemplate, ...]:
        return (*self.branch, *self.projection, *self.post)


@dataclass(frozen=True)
class BlockInstance:
    """One block of a stage: the node-id prefix, its class and constructor arguments."""

    id: str
    class_name: str
    in_channels: int
    channels: int
    stride: int
    params: Mapping[str, Value]
    position: Mapping[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class StageLayout:
    name: str
    blocks: tuple[BlockInstance, ...]


@dataclass(frozen=True)
class TopOp:
    """A stem or head module: its node id, op kind, attributes as code text, input channels."""

    node_id: str
    kind: str
    sources: Mapping[str, Any]
    in_channels: int


@dataclass
class Layout:
    """The network as code: block classes, then stem, stages and head in order."""

    classes: dict[str, BlockTemplate] = field(default_factory=dict)
    stem: list[TopOp] = field(default_factory=list)
    stages: list[StageLayout] = field(default_factory=list)
    head: list[TopOp] = field(default_factory=list)
    zero_init_last_norm: bool = False
