"""The op table: every op kind the compiler knows, each defined once in its family's module.

Spec validation, expansion, complexity, weights and both emitters look ops up here; nothing
outside an op's own module branches on its kind.
"""

from .act import ActOp, ReLUOp
from .base import Context, InitOptions, OpDef, OpModel, Shape, ShapeError
from .channel_conv import ChannelConvOp
from .conv import ConvOp, StdConvOp
from .multipath import AddOp, ConcatOp, MulOp, ReduceOp, SoftmaxOp, SplitOp
from .norm import BatchNormOp, FrozenBatchNormOp, GroupNormOp
from .pool import AvgPoolOp, BlurPoolOp, GlobalPoolOp, MaxPoolOp
from .regularization import DropPathOp
from .response_norm import EvoNormS0Op, FilterResponseNormOp
from .structural import DropoutOp, FlattenOp, InputOp, LinearOp, PadOp

REGISTRY: dict[str, OpDef] = {op.kind: op for op in (
    ConvOp(), BatchNormOp(), ReLUOp(), MaxPoolOp(), AvgPoolOp(),
    InputOp(), AddOp(), GlobalPoolOp(), FlattenOp(), DropoutOp(), LinearOp(),
    ActOp(),
    GroupNormOp(), FrozenBatchNormOp(), StdConvOp(),
    BlurPoolOp(), DropPathOp(),
    PadOp(),
    SplitOp(), ConcatOp(), MulOp(), SoftmaxOp(), ReduceOp(),
    FilterResponseNormOp(), EvoNormS0Op(), ChannelConvOp(),
)}
# Ops a spec may write (the others are placed by the compiler: input, add, head pooling, ...).
SPEC_OPS: dict[str, OpDef] = {k: op for k, op in REGISTRY.items() if op.model is not None}


__all__ = ["REGISTRY", "SPEC_OPS", "Context", "InitOptions", "OpDef", "OpModel", "Shape",
           "ShapeError"]
