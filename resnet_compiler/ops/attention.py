"""Channel attention: squeeze-and-excitation (Hu et al.), as timm's SEModule computes it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..expr import MAKE_DIVISIBLE_SOURCE, make_divisible
from .base import (
    Attrs,
    InitOptions,
    OpDef,
    OpModel,
    PositiveInt,
    Shape,
    Size,
    expect_channels,
    kaiming_fan_out,
    text,
    uniform_fan_in,
)


class SqueezeExcite(OpModel):
    """Squeeze-and-excitation: global average pool, 1x1 conv down to `channels`, ReLU, 1x1 conv
    back, sigmoid gate. Without `channels` the width is make_divisible(C / reduction, divisor,
    round_limit=0), timm's rule."""

    op: Literal["se"]
    channels: Size | None = None
    reduction: Size = 16
    divisor: PositiveInt = 8


SE_CLASS = '''
class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): pool, 1x1 conv down, ReLU, 1x1 conv up, sigmoid gate."""

    def __init__(self, channels: int, rd_channels: int | None = None, reduction: int = 16,
                 divisor: int = 8) -> None:
        super().__init__()
        if rd_channels is None:
            rd_channels = make_divisible(channels / reduction, divisor, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.fc2(self.act(self.fc1(scale)))
        return x * self.gate(scale)
'''


class SqueezeExciteOp(OpDef):
    kind = "se"
    model = SqueezeExcite
    sizes = {"channels": 1, "reduction": 1}
    role = "attention"
    torch_helpers = (MAKE_DIVISIBLE_SOURCE, SE_CLASS)

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        c = inputs[0][0]
        rd = values.get("channels")
        if rd is None:
            rd = make_divisible(c / values["reduction"], values["divisor"], round_limit=0.0)
        return {"channels": c, "rd_channels": rd}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        expect_channels("se", attrs["channels"], inputs[0])
        return inputs[0]

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        c, r = attrs["channels"], attrs["rd_channels"]
        return {"fc1.weight": (r, c, 1, 1), "fc1.bias": (r,), "fc2.weight": (c, r, 1, 1),
                "fc2.bias": (c,)}

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        return 2 * attrs["channels"] * attrs["rd_channels"]

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: np.random.Generator,
             options: InitOptions) -> dict[str, np.ndarray]:
        out = {}
        for fc in ("fc1", "fc2"):
            w = tensors[f"{fc}.weight"]
            out[f"{fc}.weight"] = kaiming_fan_out(rng, w)
            out[f"{fc}.bias"] = uniform_fan_in(rng, tensors[f"{fc}.bias"], math.prod(w[1:]))
        return out

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        if "channels" in src:
            return f"SqueezeExcite({in_channels}, {text(src['channels'])})"
        args = [in_channels]
        if text(src["reduction"]) != "16":
            args.append(f"reduction={text(src['reduction'])}")
        if src["divisor"] != 8:
            args.append(f"divisor={src['divisor']!r}")
        return f"SqueezeExcite({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """Pool, fc1, ReLU, fc2, sigmoid, Mul: the emitted module's computation, node for node."""
        c, r = attrs["channels"], attrs["rd_channels"]
        x = inputs[0]
        y = b.add("GlobalAveragePool", f"{node}.pool", [x], f"{node}.pool", shape=(c, 1, 1))
        for fc, width in (("fc1", r), ("fc2", c)):
            ins = [y, b.init(f"{node}.{fc}.weight", b.weight(f"{node}.{fc}.weight")),
                   b.init(f"{node}.{fc}.bias", b.weight(f"{node}.{fc}.bias"))]
            y = b.add("Conv", f"{node}.{fc}", ins, f"{node}.{fc}", shape=(width, 1, 1),
                      kernel_shape=[1, 1])
            if fc == "fc1":
                y = b.add("Relu", f"{node}.act", [y], f"{node}.act", shape=(r, 1, 1))
        y = b.add("Sigmoid", f"{node}.gate", [y], f"{node}.gate", shape=(c, 1, 1))
        return b.add("Mul", node, [x, y], node)
