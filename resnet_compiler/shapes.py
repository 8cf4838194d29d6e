"""Shape inference and structural checks for one op, in pure Python (no torch).

Shapes exclude the batch axis: (channels, height, width) for feature maps, (features,) after
flatten. The formulas are PyTorch's (and ONNX's) for convolution and pooling, ceil_mode included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """An op that cannot be applied to its input shape."""


def _spatial(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
             ceil_mode: bool = False) -> int:
    span = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - span
    # PyTorch's integer formula (floor division, also for a negative numerator): with ceil_mode a
    # window wider than a small input still yields one output (AvgPool2d(2, 2, ceil_mode=True)
    # maps 1x1 to 1x1), and the last window must start inside the input or left padding
    if not ceil_mode:
        return max(numerator // stride + 1, 0)
    out = (numerator + stride - 1) // stride + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return max(out, 0)


def _window(op: str, attrs: Mapping[str, Any], shape: Shape) -> Shape:
    c, h, w = shape
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    d = attrs.get("dilation", 1)
    if op != "conv" and p > k // 2:
        raise ShapeError(f"padding {p} is more than half the kernel {k}")
    oh = _spatial(h, k, s, p, d, attrs.get("ceil_mode", False))
    ow = _spatial(w, k, s, p, d, attrs.get("ceil_mode", False))
    if oh < 1 or ow < 1:
        raise ShapeError(f"the {h}x{w} feature map shrinks below 1x1 (kernel {k}, stride {s},"
                         f" padding {p}); use a larger input or fewer strided layers")
    return (c, oh, ow)


def output_shape(op: str, attrs: Mapping[str, Any], inputs: Sequence[Shape]) -> Shape:
    """The output shape of `op` on `inputs`, or ShapeError saying why it does not fit."""
    if op == "input":
        return tuple(attrs["input_shape"])
    if op == "add":
        a, b = inputs
        if a != b:
            raise ShapeError(f"cannot add the branch {_fmt(a)} to the shortcut {_fmt(b)}")
        return a
    (x,) = inputs
    if op == "conv":
        if len(x) != 3:
            raise ShapeError(f"conv needs a feature map, got {_fmt(x)}")
        cin, groups, cout = attrs["in_channels"], attrs["groups"], attrs["out_channels"]
        if x[0] != cin:
            raise ShapeError(f"conv expects {cin} input channels, got {x[0]}")
        if cin % groups or cout % groups:
            raise ShapeError(f"groups={groups} must divide both the input channels ({cin}) and"
                             f" the output channels ({cout})")
        c, h, w = _window(op, attrs, x)
        return (cout, h, w)
    if op in ("bn", "se"):
        if x[0] != attrs["channels"]:
            raise ShapeError(f"{op} expects {attrs['channels']} channels, got {x[0]}")
        return x
    if op in ("relu", "dropout"):
        return x
    if op in ("maxpool", "avgpool"):
        return _window(op, attrs, x)
    if op == "global_pool":
        return (x[0], 1, 1)
    if op == "flatten":
        return (math.prod(x),)
    if op == "linear":
        if x != (attrs["in_features"],):
            raise ShapeError(f"linear expects {attrs['in_features']} features, got {_fmt(x)}")
        return (attrs["out_features"],)
    raise ShapeError(f"unknown op {op!r}")


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape))
