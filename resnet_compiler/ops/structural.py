"""Ops the compiler places itself: the network input, the residual add, and the head's flatten,
dropout and classifier."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..messages import format_shape
from .base import Attrs, InitOptions, OpDef, Shape, ShapeError, uniform_fan_in


class InputOp(OpDef):
    kind = "input"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        return tuple(attrs["input_shape"])

    def acts(self, attrs: Attrs, out: Shape) -> int:
        return 0  # the caller's tensor, not written by the network

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> None:
        return None

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.input_name


class AddOp(OpDef):
    """Elementwise sum of a block's branch (input 0) and shortcut (input 1)."""

    kind = "add"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        first = inputs[0]
        for other in inputs[1:]:
            if other != first:
                raise ShapeError(f"cannot add the branch {format_shape(first)} to the shortcut"
                                 f" {format_shape(other)}")
        return first

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> None:
        return None

    def torch_call(self, module: str, inputs: Sequence[str]) -> str:
        return " + ".join(inputs)

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("Add", node, list(inputs), node)


class FlattenOp(OpDef):
    kind = "flatten"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        return (math.prod(inputs[0]),)

    def acts(self, attrs: Attrs, out: Shape) -> int:
        return 0  # a view

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return "nn.Flatten(1)"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("Flatten", node, list(inputs), node, axis=1)


class DropoutOp(OpDef):
    """Dropout before the classifier: active in training, the identity at inference."""

    kind = "dropout"

    def acts(self, attrs: Attrs, out: Shape) -> int:
        return 0  # nothing at inference

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return f"nn.Dropout(p={src['p']!r})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return inputs[0]


class LinearOp(OpDef):
    """The classifier: `nn.Linear`, ONNX `Gemm`."""

    kind = "linear"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        if inputs[0] != (attrs["in_features"],):
            raise ShapeError(f"linear expects {attrs['in_features']} features, got"
                             f" {format_shape(inputs[0])}")
        return (attrs["out_features"],)

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        return {"weight": (attrs["out_features"], attrs["in_features"]),
                "bias": (attrs["out_features"],)}

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        return attrs["in_features"] * attrs["out_features"]

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: np.random.Generator,
             options: InitOptions) -> dict[str, np.ndarray]:
        return {k: uniform_fan_in(rng, s, attrs["in_features"]) for k, s in tensors.items()}

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return f"nn.Linear({in_channels}, {src['out_features']})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        ins = [inputs[0], b.init(f"{node}.weight", b.weight(f"{node}.weight")),
               b.init(f"{node}.bias", b.weight(f"{node}.bias"))]
        return b.add("Gemm", node, ins, node, transB=1)
