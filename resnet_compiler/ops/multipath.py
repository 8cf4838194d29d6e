"""Ops that join and divide paths inside a block: split, concat, add, mul, softmax and reduce.

They take their inputs by value name (`input:`), so a block can be a small graph: the
Selective Kernel's paths mixed by a softmax over paths, Res2Net's channel groups feeding each
other, ResNeSt's split attention across radix groups, CBAM's channel and spatial gates. None of
them has weights or a module: the generated code calls torch functions on named locals, and ONNX
gets Split, Concat, Add, Mul, Softmax and Reduce* nodes.
"""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ..messages import format_shape
from .base import Attrs, Count, OpDef, OpModel, Shape, ShapeError, Size, text

AXES = {"channels": 0, "height": 1, "width": 2}
DIMENSION_NAMES = ("channels", "height", "width")


def _onnx_axes(b: Any, node: str, op_type: str, inputs: list[str], axes: list[int], out: str,
               **attrs: Any) -> str:
    """A Reduce* node: axes as an attribute before opset 18 (ReduceSum before 13), as an input
    from then on."""
    import numpy as np
    takes_input = b.opset >= (13 if op_type == "ReduceSum" else 18)
    if takes_input:
        const = b.const(f"{node}.axes", np.array(axes, dtype=np.int64), dtype="<i8")
        return b.add(op_type, node, [*inputs, const], out, **attrs)
    return b.add(op_type, node, inputs, out, axes=axes, **attrs)


class _Functional(OpDef):
    """An op without a module or weights: a torch expression on its inputs."""

    functional = True

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> None:
        return None


# ---- split ------------------------------------------------------------------------------------

class Split(OpModel):
    """Divide the channels into `parts` equal parts, or into parts of the given `sizes`; part i
    is the value `NAME[i]`."""

    op: Literal["split"]
    parts: Size | None = Field(None, description="Number of equal parts.")
    sizes: Annotated[list[Size], Field(min_length=2)] | None = Field(
        None, description="Channels of each part (they must add up to the input's channels).")

    @model_validator(mode="after")
    def _one_rule(self) -> "Split":
        if (self.parts is None) == (self.sizes is None):
            raise ValueError("split takes either parts or sizes")
        return self


class SplitOp(_Functional):
    """The node's shape is its input's; each consumer's edge names the part it reads (`part`)."""

    kind = "split"
    model = Split
    sizes = {"parts": 1}  # one part: a loop over paths may read its input whole
    size_lists = {"sizes": 1}
    has_parts = True

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        channels = inputs[0][0]
        if "parts" in values:
            parts = values["parts"]
            if channels % parts:
                raise ShapeError(f"{channels} channels do not split into {parts} equal parts")
            return {"sizes": [self.part_channels(values, channels, i) for i in range(parts)],
                    "parts": parts}
        sizes = [values[f"sizes[{i}]"] for i in range(len(values["sizes"]))]
        if sum(sizes) != channels:
            raise ShapeError(f"split sizes {sizes} add up to {sum(sizes)}, but the input has"
                             f" {channels} channels")
        return {"sizes": sizes}

    def part_channels(self, fields: Mapping[str, Any], channels: Count, part: int) -> Count:
        if "parts" in fields:
            return channels // fields["parts"]
        return fields["sizes"][part]

    def part_shapes(self, attrs: Attrs, shape: Shape) -> list[Shape]:
        return [self.part_shape(attrs, shape, i) for i in range(len(attrs["sizes"]))]

    def acts(self, attrs: Attrs, out: Shape) -> int:
        return 0  # views of its input

    def torch_expr(self, module: str, inputs: Sequence[str], src: Mapping[str, Any]) -> str:
        if "parts" in src:
            return f"torch.chunk({inputs[0]}, {text(src['parts'])}, dim=1)"
        return f"torch.split({inputs[0]}, [{', '.join(map(text, src['sizes']))}], dim=1)"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        import numpy as np
        from onnx import helper
        sizes = b.const(f"{node}.sizes", np.array(attrs["sizes"], dtype=np.int64), dtype="<i8")
        outputs = [f"{node}[{i}]" for i in range(len(attrs["sizes"]))]
        b.proto.node.append(helper.make_node("Split", [inputs[0], sizes], outputs, name=node,
                                             axis=1))
        shape = b.g.nodes[node]["shape"]
        for i, out in enumerate(outputs):
            b.value_info(out, self.part_shape(attrs, shape, i))
        return node


# ---- joining ----------------------------------------------------------------------------------

class Concat(OpModel):
    """Join two or more values along `axis` (channels by default)."""

    op: Literal["concat"]
    axis: Literal["channels", "height", "width"] = "channels"


class ConcatOp(_Functional):
    kind = "concat"
    model = Concat

    def channels(self, fields: Mapping[str, Any], inputs: Sequence[Count]) -> Count:
        return sum(inputs) if fields.get("axis", "channels") == "channels" else inputs[0]

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        axis = AXES[attrs.get("axis", "channels")]
        first = _same_shapes("concat", inputs, axis)
        out = list(first)
        out[0] = self.channels(attrs, [s[0] for s in inputs])
        if axis:
            out[axis] = sum(s[axis] for s in inputs)
        return tuple(out)

    def torch_expr(self, module: str, inputs: Sequence[str], src: Mapping[str, Any]) -> str:
        axis = AXES[src.get("axis", "channels")] + 1
        return f"torch.cat([{', '.join(inputs)}], dim={axis})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("Concat", node, list(inputs), node, axis=AXES[attrs.get("axis", "channels")] + 1)


class Add(OpModel):
    """Elementwise sum of two or more values of one shape."""

    op: Literal["add"]


class AddOp(_Functional):
    """Elementwise sum: a block's branch (input 0) and shortcut (input 1), or values in a block."""

    kind = "add"
    model = Add

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        return _same_shapes("add", inputs)

    def torch_call(self, module: str, inputs: Sequence[str]) -> str:
        if any(i.startswith("*") for i in inputs):  # every copy of a loop's value, or parts:
            # summed from the first value on (no 0 + ... tensor), in order, as ONNX's Add chain
            first, *rest = inputs
            if first.startswith("*"):
                first, rest = f"{first[1:]}[0]", [f"*{first[1:]}[1:]", *rest]
            if len(rest) == 1 and rest[0].startswith("*"):
                return f"sum({rest[0][1:]}, {first})"
            return f"sum([{', '.join(rest)}], {first})"
        return " + ".join(inputs)

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        value = inputs[0]
        if len(inputs) == 1:  # a fan-in over one copy
            return b.add("Identity", node, [value], node)
        for i, other in enumerate(inputs[1:], 1):
            last = i == len(inputs) - 1
            value = b.add("Add", node if last else f"{node}.{i}", [value, other],
                          node if last else f"{node}.{i}", shape=b.g.nodes[node]["shape"])
        return value


def _same_shapes(kind: str, inputs: Sequence[Shape], free_axis: int | None = None) -> Shape:
    """The first input's shape, after checking that every input matches it (except along
    `free_axis`); the error names the first dimension that differs."""
    if not inputs:
        raise ShapeError(f"{kind} needs an input")
    first = inputs[0]
    for i, other in enumerate(inputs[1:], 2):
        if len(other) != len(first):
            raise ShapeError(f"cannot {kind} {format_shape(first)} (input 1) and"
                             f" {format_shape(other)} (input {i})")
        for d, (a, c) in enumerate(zip(first, other, strict=True)):
            if d != free_axis and a != c:
                raise ShapeError(f"the inputs differ in {DIMENSION_NAMES[d] if d < 3 else d}:"
                                 f" {a} (input 1) vs {c} (input {i})")
    return first


class Mul(OpModel):
    """Elementwise product of a value and a gate; the gate may have size 1 in any dimension
    (a channel gate is Cx1x1, a spatial gate 1xHxW)."""

    op: Literal["mul"]


class MulOp(_Functional):
    kind = "mul"
    model = Mul

    def channels(self, fields: Mapping[str, Any], inputs: Sequence[Count]) -> Count:
        """The value's; a gate of several channels on a one-channel value broadcasts it."""
        value, gate = inputs
        return gate if value == 1 else value

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        if len(inputs) != 2:
            raise ShapeError(f"mul takes two inputs (a value and a gate), got {len(inputs)}")
        x, gate = inputs
        if len(x) != len(gate):
            raise ShapeError(f"cannot multiply {format_shape(x)} by {format_shape(gate)}")
        for d, (a, g) in enumerate(zip(x, gate, strict=True)):
            if g not in (1, a) and a != 1:
                raise ShapeError(f"the gate's {DIMENSION_NAMES[d] if d < 3 else d} is {g};"
                                 f" it must be {a} or 1 (input 1 is {format_shape(x)}, the gate"
                                 f" {format_shape(gate)})")
        return (self.channels(attrs, [x[0], gate[0]]),
                *(max(a, g) for a, g in zip(x[1:], gate[1:], strict=True)))

    def torch_call(self, module: str, inputs: Sequence[str]) -> str:
        return f"{inputs[0]} * {inputs[1]}"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("Mul", node, list(inputs), node)


# ---- attention arithmetic ---------------------------------------------------------------------

class Softmax(OpModel):
    """Softmax across `radix` paths. The channels are read as (groups, radix, rest), the softmax
    runs over radix, and the result is laid out as (radix, groups, rest), so that splitting it
    into `radix` parts gives each path's weights (ResNeSt's radix softmax; with groups 1, the
    Selective Kernel's softmax over paths)."""

    op: Literal["softmax"]
    radix: Size
    groups: Size = 1


RADIX_SOFTMAX_SOURCE = '''
def radix_softmax(x: torch.Tensor, radix: int, groups: int) -> torch.Tensor:
    """Softmax over `radix` paths of channels laid out (groups, radix, rest); the result is laid
    out (radix, groups, rest), one slice of channels per path. One path: a sigmoid gate."""
    if radix == 1:
        return torch.sigmoid(x)
    batch = x.shape[0]
    y = x.reshape(batch, groups, radix, -1).transpose(1, 2).softmax(dim=1)
    return y.reshape(x.shape)
'''


class SoftmaxOp(_Functional):
    kind = "softmax"
    model = Softmax
    sizes = {"radix": 1, "groups": 1}
    torch_helpers = (RADIX_SOFTMAX_SOURCE,)

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        r, g = attrs["radix"], attrs["groups"]
        if x[0] % (r * g):
            raise ShapeError(f"softmax groups (radix {r} x groups {g} = {r * g}) do not divide the"
                             f" {x[0]} channels")
        return x

    def torch_expr(self, module: str, inputs: Sequence[str], src: Mapping[str, Any]) -> str:
        return f"radix_softmax({inputs[0]}, {text(src['radix'])}, {text(src.get('groups', 1))})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        import numpy as np
        r, g = attrs["radix"], attrs["groups"]
        if r == 1:  # one path: a sigmoid gate (timm's rSoftMax)
            return b.add("Sigmoid", node, [inputs[0]], node)
        grouped = b.const(f"{node}.grouped", np.array([0, g, r, -1], dtype=np.int64), dtype="<i8")
        y = b.add("Reshape", f"{node}.reshape", [inputs[0], grouped], f"{node}.reshape")
        axis = 2
        if g > 1:
            y = b.add("Transpose", f"{node}.transpose", [y], f"{node}.transpose",
                      perm=[0, 2, 1, 3])
            axis = 1
        y = b.add("Softmax", f"{node}.softmax", [y], f"{node}.softmax", axis=axis)
        if b.dynamic_hw:  # the input's own shape, whatever its height and width
            back = b.add("Shape", f"{node}.shape", [inputs[0]], f"{node}.shape")
        else:  # a constant shape keeps ONNX shape inference exact
            back = b.const(f"{node}.shape", np.array([0, *b.g.nodes[node]["shape"]],
                                                     dtype=np.int64), dtype="<i8")
        return b.add("Reshape", node, [y, back], node)


class Reduce(OpModel):
    """Mean, max or sum over the spatial positions (-> Cx1x1) or over the channels (-> 1xHxW),
    keeping the reduced dimensions."""

    op: Literal["reduce"]
    mode: Literal["mean", "max", "sum"] = "mean"
    over: Literal["space", "channels"] = "space"


TORCH_REDUCE = {"mean": "mean", "max": "amax", "sum": "sum"}
ONNX_REDUCE = {"mean": "ReduceMean", "max": "ReduceMax", "sum": "ReduceSum"}
ONNX_GLOBAL_POOL = {"mean": "GlobalAveragePool", "max": "GlobalMaxPool"}


class ReduceOp(_Functional):
    kind = "reduce"
    model = Reduce

    def channels(self, fields: Mapping[str, Any], inputs: Sequence[Count]) -> Count:
        return inputs[0] if fields.get("over", "space") == "space" else 1

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        if len(x) != 3:
            raise ShapeError(f"needs a feature map, got {format_shape(x)}")
        c = self.channels(attrs, [x[0]])
        return (c, 1, 1) if attrs.get("over", "space") == "space" else (c, *x[1:])

    def torch_expr(self, module: str, inputs: Sequence[str], src: Mapping[str, Any]) -> str:
        dims = "(2, 3)" if src.get("over", "space") == "space" else "1"
        return f"{inputs[0]}.{TORCH_REDUCE[src.get('mode', 'mean')]}({dims}, keepdim=True)"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """The mean or max over space is ONNX's global pool (one node, no axes constant, as an
        exported SE block has it); the rest a Reduce* node."""
        over, mode = attrs.get("over", "space"), attrs.get("mode", "mean")
        if over == "space" and mode in ONNX_GLOBAL_POOL:
            return b.add(ONNX_GLOBAL_POOL[mode], node, list(inputs), node)
        axes = [2, 3] if over == "space" else [1]
        return _onnx_axes(b, node, ONNX_REDUCE[mode], list(inputs), axes, node, keepdims=1)

