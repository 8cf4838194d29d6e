"""A 1-D convolution across the channels of a pooled map: the primitive of efficient channel
attention (Wang et al., ECA-Net), whose module (`eca`, builtin/attention.yaml) pools, applies it
and gates. As timm's EcaModule computes it: the C values are one sequence, one filter of `kernel`
taps, zero padding on both sides, no bias."""

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .base import (
    Attrs,
    InitOptions,
    OpDef,
    OpModel,
    Shape,
    ShapeError,
    Size,
    text,
    uniform_fan_in,
)

if TYPE_CHECKING:
    import numpy as np


class ChannelConv(OpModel):
    """A 1-D convolution of `kernel` taps (odd) across the channels of a Cx1x1 map (a pooled
    map), as ECA-Net's: one filter shared by all channels, zero padding, no bias."""

    op: Literal["channel_conv"]
    kernel: Size = 3


CHANNEL_CONV_CLASS = '''
class ChannelConv1d(nn.Conv1d):
    """A 1-D convolution across the channels of a pooled map (N, C, 1, 1), as ECA-Net's: the
    channels are one sequence per sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x.view(x.shape[0], 1, -1))
        return out.view(x.shape[0], -1, 1, 1)
'''


class ChannelConvOp(OpDef):
    kind = "channel_conv"
    model = ChannelConv
    sizes = {"kernel": 1}
    torch_helpers = (CHANNEL_CONV_CLASS,)

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"channels": inputs[0][0], "kernel": values["kernel"]}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        if len(x) != 3 or x[1:] != (1, 1):
            raise ShapeError("channel_conv reads a pooled map (C x 1 x 1); put a reduce or a"
                             " global pool before it")
        if attrs["kernel"] % 2 == 0:
            raise ShapeError(f"the channel_conv kernel must be odd (it pads equally on both"
                             f" sides), got {attrs['kernel']}")
        return x

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        return {"weight": (1, 1, attrs["kernel"])}

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        return attrs["channels"] * attrs["kernel"]

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        """nn.Conv1d's own initialisation (the generated _init_weights leaves 1-D convs alone)."""
        shape = tensors["weight"]
        return {"weight": uniform_fan_in(rng, shape, math.prod(shape[1:]))}

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        k = text(src["kernel"])
        padding = str((int(k) - 1) // 2) if k.isdigit() else f"({k} - 1) // 2"
        return f"ChannelConv1d(1, 1, kernel_size={k}, padding={padding}, bias=False)"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """Reshape to (N, 1, C), 1-D Conv, reshape to (N, C, 1, 1); the batch stays -1, so it is
        dynamic."""
        import numpy as np
        c, k = attrs["channels"], attrs["kernel"]
        p = (k - 1) // 2
        row = b.const(f"{node}.row_shape", np.array([-1, 1, c]), dtype="<i8")
        y = b.add("Reshape", f"{node}.row", [inputs[0], row], f"{node}.row", shape=(1, c))
        weight = b.init(f"{node}.weight", b.weight(f"{node}.weight"))
        y = b.add("Conv", f"{node}.conv", [y, weight], f"{node}.conv", shape=(1, c),
                  kernel_shape=[k], pads=[p, p])
        column = b.const(f"{node}.map_shape", np.array([-1, c, 1, 1]), dtype="<i8")
        return b.add("Reshape", node, [y, column], node, shape=(c, 1, 1))
