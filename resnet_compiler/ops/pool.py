"""Pooling: windowed max and average pooling, and the head's global pooling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import StrictBool

from .base import Attrs, Context, Offset, OpDef, OpModel, Shape, Size, fold_constants, text, window_shape


class MaxPool(OpModel):
    """Max pooling; `stride` defaults to `kernel`, `padding` to kernel // 2."""

    op: Literal["maxpool"]
    kernel: Size
    stride: Size | None = None
    padding: Offset | None = None
    ceil_mode: StrictBool = False


class AvgPool(OpModel):
    """Average pooling; `stride` defaults to `kernel`, `padding` to 0."""

    op: Literal["avgpool"]
    kernel: Size
    stride: Size | None = None
    padding: Offset = 0
    ceil_mode: StrictBool = False
    count_include_pad: StrictBool = True


class _WindowPool(OpDef):
    sizes = {"kernel": 1, "stride": 1, "padding": 0}
    attr_names: tuple[str, ...] = ("kernel", "stride", "padding", "ceil_mode")

    def sources(self, op: Any, ctx: Context) -> dict[str, Any]:
        out = super().sources(op, ctx)
        out.setdefault("stride", out["kernel"])
        out.setdefault("padding", fold_constants(f"({out['kernel']}) // 2"))
        return out

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {k: values[k] for k in self.attr_names}

    def is_identity(self, attrs: Attrs) -> bool:
        return attrs["kernel"] == 1 and attrs["stride"] == 1 and attrs["padding"] == 0

    def identity_condition(self, src: Mapping[str, Any]) -> str | None:
        parts = dict.fromkeys(f"{text(src[k])} == {v}" for k, v in
                              (("kernel", 1), ("stride", 1), ("padding", 0))
                              if text(src[k]) != str(v))
        # a constant part that is false means the op never vanishes
        for part in parts:
            left = part.split(" == ")[0]
            if left.lstrip("-").isdigit():
                return None
        return " and ".join(parts) or "True"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        return window_shape(attrs, x, x[0], pool=True)

    def _window_args(self, src: Mapping[str, Any]) -> list[str]:
        return [f"kernel_size={text(src['kernel'])}", f"stride={text(src['stride'])}"]

    def _onnx_attrs(self, attrs: Attrs) -> dict[str, Any]:
        k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
        return {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p],
                "ceil_mode": int(attrs["ceil_mode"])}


class MaxPoolOp(_WindowPool):
    kind = "maxpool"
    model = MaxPool

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [*self._window_args(src), f"padding={text(src['padding'])}"]
        if src["ceil_mode"]:
            args.append("ceil_mode=True")
        return f"nn.MaxPool2d({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("MaxPool", node, list(inputs), node, **self._onnx_attrs(attrs))


class AvgPoolOp(_WindowPool):
    kind = "avgpool"
    model = AvgPool
    attr_names = ("kernel", "stride", "padding", "ceil_mode", "count_include_pad")

    def sources(self, op: Any, ctx: Context) -> dict[str, Any]:
        out = OpDef.sources(self, op, ctx)
        out.setdefault("stride", out["kernel"])
        return out

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = self._window_args(src)
        if text(src["padding"]) != "0":
            args.append(f"padding={text(src['padding'])}")
        if src["ceil_mode"]:
            args.append("ceil_mode=True")
        if not src["count_include_pad"]:
            args.append("count_include_pad=False")
        return f"nn.AvgPool2d({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("AveragePool", node, list(inputs), node,
                     count_include_pad=int(attrs["count_include_pad"]), **self._onnx_attrs(attrs))


class GlobalPoolOp(OpDef):
    """The head's global pooling (`head.pool: avg | max`) to 1x1."""

    kind = "global_pool"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        return (inputs[0][0], 1, 1)

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return f"nn.Adaptive{'Avg' if src['mode'] == 'avg' else 'Max'}Pool2d(1)"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        op_type = "GlobalAveragePool" if attrs["mode"] == "avg" else "GlobalMaxPool"
        return b.add(op_type, node, list(inputs), node)
