"""The network input (placed by the compiler), the head's flatten, dropout and classifier
(placed by the compiler for `head: {pool: ...}`, written by a head list), and pad (timm's
same-padding)."""

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from ..messages import format_shape
from .base import (
    Attrs,
    Count,
    InitOptions,
    NonNegativeInt,
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


class InputOp(OpDef):
    kind = "input"
    graph_input = True

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        return tuple(attrs["input_shape"])

    def acts(self, attrs: Attrs, out: Shape) -> int:
        return 0  # the caller's tensor, not written by the network

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> None:
        return None

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.input_name


class Flatten(OpModel):
    """Flatten the feature map to a vector (after the global pool, before a linear)."""

    op: Literal["flatten"]


class Dropout(OpModel):
    """Dropout (training only; the identity at inference and in ONNX)."""

    op: Literal["dropout"]
    p: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0


class Linear(OpModel):
    """A fully connected layer on a vector; `out_features` defaults to the spec's num_classes."""

    op: Literal["linear"]
    out_features: Size = "num_classes"


class FlattenOp(OpDef):
    kind = "flatten"
    model = Flatten

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
    model = Dropout
    onnx_passthrough = True
    reals = {"p": (0.0, 1.0)}

    def is_identity(self, attrs: Attrs) -> bool:
        return attrs.get("p", 0.0) == 0

    def acts(self, attrs: Attrs, out: Shape) -> int:
        return 0  # nothing at inference

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return f"nn.Dropout(p={text(src['p'])})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return inputs[0]


class LinearOp(OpDef):
    """The classifier: `nn.Linear`, ONNX `Gemm`."""

    kind = "linear"
    model = Linear
    role = "classifier"
    classifier = True
    sizes = {"out_features": 1}

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        if "in_features" in values:  # placed by the compiler's own head
            return dict(values)
        if len(inputs[0]) != 1:
            raise ShapeError(f"linear needs a vector, got {format_shape(inputs[0])} (flatten"
                             " the pooled map first)")
        return {"in_features": inputs[0][0], "out_features": values["out_features"],
                "bias": True}

    def channels(self, fields: Mapping[str, Any], inputs: Sequence[Count]) -> Count:
        return fields["out_features"]

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        if inputs[0] != (attrs["in_features"],):
            raise ShapeError(f"linear expects {attrs['in_features']} features, got"
                             f" {format_shape(inputs[0])}")
        return (self.channels(attrs, [inputs[0][0]]),)

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        return {"weight": (attrs["out_features"], attrs["in_features"]),
                "bias": (attrs["out_features"],)}

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        return attrs["in_features"] * attrs["out_features"]

    def pycls_counts(self, attrs: Attrs, macs: int) -> tuple[int, int]:
        out = attrs["out_features"]
        return macs + (out if attrs.get("bias", True) else 0), out

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        return {k: uniform_fan_in(rng, s, attrs["in_features"]) for k, s in tensors.items()}

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return f"nn.Linear({in_channels}, {src['out_features']})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        ins = [inputs[0], b.init(f"{node}.weight", b.weight(f"{node}.weight")),
               b.init(f"{node}.bias", b.weight(f"{node}.bias"))]
        return b.add("Gemm", node, ins, node, transB=1)


class Pad(OpModel):
    """Constant padding of the feature map (timm's BiT stem pads with zeros before its max pool):
    `padding` on every side, or `[left, right, top, bottom]`."""

    op: Literal["pad"]
    padding: NonNegativeInt | Annotated[list[NonNegativeInt], Field(min_length=4, max_length=4)]
    value: Annotated[float, Field(allow_inf_nan=False)] = 0.0


class PadOp(OpDef):
    kind = "pad"
    model = Pad

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        p = values["padding"]
        return {"padding": tuple(p) if isinstance(p, list) else (p, p, p, p),
                "value": values["value"]}

    def is_identity(self, attrs: Attrs) -> bool:
        return not any(attrs["padding"])

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        if len(x) != 3:
            raise ShapeError(f"pad needs a feature map, got {format_shape(x)}")
        left, right, top, bottom = attrs["padding"]
        return (x[0], x[1] + top + bottom, x[2] + left + right)

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        p = src["padding"]
        sides = repr(tuple(p)) if isinstance(p, (list, tuple)) else str(p)
        return f"nn.ConstantPad2d({sides}, {src['value']!r})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        import numpy as np
        left, right, top, bottom = attrs["padding"]
        pads = b.const(f"{node}.pads", np.array([0, 0, top, left, 0, 0, bottom, right]), "<i8")
        fill = np.float32(attrs["value"])
        if fill == 0 and any(b.g.nodes[n]["op"] == "maxpool" for n in b.g.successors(node)):
            # onnxruntime's PadFusion folds a zero Pad into a following MaxPool, whose own padding
            # means -inf: the smallest positive float keeps the two apart and changes no result
            fill = np.nextafter(np.float32(0), np.float32(1))
        value = b.const(f"{node}.value", np.array(fill, dtype=np.float32))
        return b.add("Pad", node, [inputs[0], pads, value], node, mode="constant")
