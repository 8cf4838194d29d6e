"""2-D convolution: `nn.Conv2d`, ONNX `Conv` (with a following norm folded into its weights)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, StrictBool

from .base import (
    Attrs,
    Context,
    InitOptions,
    Offset,
    OpDef,
    OpModel,
    Shape,
    ShapeError,
    Size,
    fold_constants,
    kaiming_fan_out,
    text,
    uniform_fan_in,
    window_shape,
)


class Conv(OpModel):
    """2-D convolution. `padding` defaults to dilation * (kernel - 1) // 2 ('same' for stride 1)."""

    op: Literal["conv"]
    channels: Size
    kernel: Size
    stride: Size = 1
    padding: Offset | None = None
    dilation: Size = 1
    groups: Size = 1
    bias: StrictBool | None = Field(None, description="Default: defaults.conv_bias.")


class ConvOp(OpDef):
    kind = "conv"
    model = Conv
    sizes = {"channels": 1, "kernel": 1, "stride": 1, "dilation": 1, "groups": 1, "padding": 0}
    role = "conv"
    torch_init = (("nn.Conv2d", ('nn.init.kaiming_normal_(m.weight, mode="fan_out", '
                                 'nonlinearity="relu")',)),)

    def sources(self, op: Conv, ctx: Context) -> dict[str, Any]:
        out = super().sources(op, ctx)
        out.setdefault("bias", ctx.conv_bias)
        if "padding" not in out:
            out["padding"] = fold_constants(f"({out['dilation']}) * (({out['kernel']}) - 1) // 2")
        return out

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"in_channels": inputs[0][0], "out_channels": values["channels"],
                "kernel": values["kernel"], "stride": values["stride"],
                "padding": values["padding"], "dilation": values["dilation"],
                "groups": values["groups"], "bias": values["bias"]}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        if len(x) != 3:
            raise ShapeError(f"conv needs a feature map, got {'x'.join(map(str, x))}")
        cin, groups, cout = attrs["in_channels"], attrs["groups"], attrs["out_channels"]
        if x[0] != cin:
            raise ShapeError(f"conv expects {cin} input channels, got {x[0]}")
        if cin % groups or cout % groups:
            raise ShapeError(f"groups={groups} must divide both the input channels ({cin}) and"
                             f" the output channels ({cout})")
        return window_shape(attrs, x, cout, pool=False)

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        k = attrs["kernel"]
        out = {"weight": (attrs["out_channels"], attrs["in_channels"] // attrs["groups"], k, k)}
        if attrs["bias"]:
            out["bias"] = (attrs["out_channels"],)
        return out

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        k = attrs["kernel"]
        return math.prod(out) * (attrs["in_channels"] // attrs["groups"]) * k * k

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: np.random.Generator,
             options: InitOptions) -> dict[str, np.ndarray]:
        weight = tensors["weight"]
        out = {"weight": kaiming_fan_out(rng, weight)}
        if "bias" in tensors:
            out["bias"] = uniform_fan_in(rng, tensors["bias"], math.prod(weight[1:]))
        return out

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [in_channels, text(src["channels"]), f"kernel_size={text(src['kernel'])}"]
        defaults = {"stride": "1", "padding": "0", "dilation": "1", "groups": "1"}
        args += [f"{k}={text(src[k])}" for k in defaults if text(src[k]) != defaults[k]]
        return f"nn.Conv2d({', '.join(args)}, bias={src['bias']!r})"

    def torch_channels(self, src: Mapping[str, Any], in_channels: str) -> str:
        return text(src["channels"])

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        weight = b.weight(f"{node}.weight")
        bias = b.weight(f"{node}.bias") if attrs["bias"] else None
        weight, bias, out_node = b.fold_following_norm(node, weight, bias)
        k, p, s, d = attrs["kernel"], attrs["padding"], attrs["stride"], attrs["dilation"]
        ins = [inputs[0], b.init(f"{node}.weight", weight)]
        if bias is not None:
            ins.append(b.init(f"{node}.bias", bias))
        return b.add("Conv", node, ins, out_node, kernel_shape=[k, k], pads=[p, p, p, p],
                     strides=[s, s], dilations=[d, d], group=attrs["groups"])
