"""Typed code templates that travel beside the graph: what the PyTorch emitter needs to print
readable classes (one per block template) and what the weights need to know about blocks.

The graph holds the network's data (ops, shapes, counts); these objects hold its structure as
code: block classes with their expressions parsed once, and the order of stem, stages and head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from ..language.expr import Expr, Value

Origin = tuple[str | int, ...]  # a spec path, for errors

# Where a block stands, as its expressions see it, and the values a class's constructor takes by
# default for them.
POSITION_DEFAULTS: dict[str, Value] = {
    "block_index": 0, "stage_index": 0, "stage_blocks": 1, "global_block_index": 0,
    "total_blocks": 1, "dilation": 1, "first_dilation": 1, "drop_path_rate": 0.0, "aa": False,
    "attn": False}


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
    module: ModuleTemplate | None = None  # a module call: `sources`/`exprs` are its arguments


@dataclass(frozen=True)
class LoopTemplate:
    """`count` copies of `body`; each body op's value is a list (`convs` -> convs.0, ...), and
    `index` counts the copies in expressions and refs."""

    count: Expr
    index: str
    body: tuple[OpTemplate, ...]

    @property
    def name(self) -> str:  # a loop is named after its first op (for ordering and messages)
        return self.body[0].name


Item = Union[OpTemplate, LoopTemplate]  # noqa: UP007


@dataclass(frozen=True)
class ModuleTemplate:
    """A composite layer class: params (the constructor's keyword defaults besides
    in_channels), vars, a body of ops and loops wired by value name, and the value returned."""

    class_name: str
    kind: str
    params: Mapping[str, Value]
    vars: tuple[tuple[str, Expr], ...]
    body: tuple[Item, ...]
    output: str
    checks: tuple[tuple[Expr, str], ...] = ()  # (condition, error): a call meeting one fails
    doc: str | None = None  # the class's docstring


def flat_ops(items: tuple[Item, ...]) -> list[OpTemplate]:
    """Every op of a body, loops opened."""
    out: list[OpTemplate] = []
    for item in items:
        out += list(item.body) if isinstance(item, LoopTemplate) else [item]
    return out


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
    branch: tuple[Item, ...]
    projection: tuple[OpTemplate, ...]
    post: tuple[Item, ...]
    projection_from: str | None = None
    output: str = ""
    last_norm: str | None = None
    shared_key: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)
    position: tuple[str, ...] = ()  # position values (block_index, dilation, ...) it reads
    residual: bool = True  # False: the block's ops are all of it (shortcut and add written out)

    def ops(self) -> tuple[OpTemplate, ...]:
        return (*flat_ops(self.branch), *self.projection, *flat_ops(self.post))


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
    module: ModuleTemplate | None = None  # a module call: `sources` are its arguments
    output: str = ""  # the graph node that holds its value, when it is not node_id (a module's)

    @property
    def out_node(self) -> str:
        return self.output or self.node_id


@dataclass
class Layout:
    """The network as code: block classes, then stem, stages and head in order."""

    classes: dict[str, BlockTemplate] = field(default_factory=dict)
    modules: dict[str, ModuleTemplate] = field(default_factory=dict)  # in dependency order
    stem: list[TopOp] = field(default_factory=list)
    stages: list[StageLayout] = field(default_factory=list)
    head: list[TopOp] = field(default_factory=list)
    zero_init_last_norm: bool = False
    pre_logits: int | None = None  # a head list: how many head ops forward_head(pre_logits) runs


def owning_block(node: str, block_ids: set[str] | dict[str, Any]) -> str:
    """The block a node id belongs to: the longest block id that prefixes it (block ids may hold
    dots, as `s1.b1`); "" for the stem and head."""
    head = node.rpartition(".")[0]
    while head and head not in block_ids:
        head = head.rpartition(".")[0]
    return head
