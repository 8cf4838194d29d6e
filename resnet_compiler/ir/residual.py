"""The classic residual, recognised in a block written as `ops:`.

A block whose ops read `..., {op: shortcut, input: V}, {op: add, name: add, input: [Y,
downsample]}, post...` computes what torchvision's BasicBlock and Bottleneck compute: a branch
ending in Y, the shortcut on V where the shape changes, their sum, then the post ops. It is
templated as that (one projection, one add), so its class reads as theirs
(`shortcut = x if self.downsample is None else self.downsample(x)`) and its nodes are named as
before. Any other use of the slot is expanded where it stands, as ordinary ops.
"""

from __future__ import annotations

from typing import Any

from .wiring import BLOCK_INPUT, RESIDUAL

SLOT = "shortcut"
SLOT_NAME = "downsample"  # torchvision's and timm's name for the projection
NO_SHORTCUT = "none"  # a shortcut choice: the slot stays empty (identity)
# when the slot is used unless its `when:` says otherwise: the block's shape changes
SHAPE_CHANGES = "stride != 1 or in_channels != out_channels"


def is_slot(op: Any) -> bool:
    return getattr(op, "op", None) == SLOT


def residual_form(block: Any) -> Any | None:
    """`block` (written with `ops:`) as a branch-form block when its ops are the classic
    residual; None otherwise."""
    ops = list(block.ops)
    slots = [i for i, op in enumerate(ops) if is_slot(op)]
    if len(slots) != 1 or slots[0] + 1 >= len(ops):
        return None
    i = slots[0]
    slot, add = ops[i], ops[i + 1]
    if slot.when is not None or (slot.name or SLOT_NAME) != SLOT_NAME or \
            not isinstance(slot.input, str):
        return None
    if not (getattr(add, "op", None) == "add" and add.name == RESIDUAL and add.when is None
            and isinstance(add.input, list) and len(add.input) == 2
            and add.input[1] == SLOT_NAME):
        return None
    before = {op.name for op in ops[:i] if getattr(op, "name", None)}
    output, source = add.input[0], slot.input
    if output not in before or (source != BLOCK_INPUT and source not in before):
        return None
    post = ops[i + 2:]
    if post and not hasattr(post[0], "op"):  # a loop right after the add: ordinary ops
        return None
    if post and post[0].input not in (None, RESIDUAL):
        return None
    return block.model_copy(update={
        "ops": None, "branch": ops[:i], "post": post, "output": output,
        "projection_from": None if source == BLOCK_INPUT else source})
