"""Normalisation: BatchNorm (`nn.BatchNorm2d`, ONNX `BatchNormalization` or folded into a conv),
FrozenBatchNorm (torchvision's fixed-statistics BN, folded the same way) and GroupNorm
(`nn.GroupNorm`, lowered to ONNX ops every opset from 13 has)."""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator

from .base import (
    Attrs,
    Context,
    InitOptions,
    OpDef,
    OpModel,
    Shape,
    ShapeError,
    Size,
    expect_channels,
    text,
)

if TYPE_CHECKING:
    import numpy as np

Eps = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class BatchNorm(OpModel):
    """Batch normalisation over the current channels."""

    op: Literal["bn"]
    eps: Eps = 1e-5
    momentum: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.1


class FrozenBatchNorm(OpModel):
    """Batch normalisation with fixed statistics and affine terms, as torchvision's
    FrozenBatchNorm2d (detection backbones): all four tensors are buffers, never trained."""

    op: Literal["frozen_bn"]
    eps: Eps = 1e-5


class GroupNorm(OpModel):
    """Group normalisation (Wu & He): the channels split into `groups` groups (or groups of
    `channels_per_group` channels), each normalised over its channels and positions, then a
    per-channel affine. Give at most one of the two; the default is 32 groups."""

    op: Literal["gn"]
    groups: Size | None = None
    channels_per_group: Size | None = None
    eps: Eps = 1e-5
    affine: StrictBool = True

    @field_validator("channels_per_group")
    @classmethod
    def _one_grouping(cls, value: Any, info: ValidationInfo) -> Any:
        # both would be two answers to one question, and could disagree
        if value is not None and info.data.get("groups") is not None:
            raise ValueError("give either groups or channels_per_group, not both")
        return value


BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _affine_values(c: Shape, rng: "np.random.Generator", options: InitOptions) -> "dict[str, np.ndarray]":
    """A norm's scale and shift: non-trivial when `realistic_norm` (so comparisons exercise
    them), else ones (zeros for a zero-initialised branch end) and zeros."""
    import numpy as np
    if options.realistic_norm:
        return {"weight": rng.uniform(0.3, 0.7, c).astype(np.float32),
                "bias": rng.normal(0.0, 0.1, c).astype(np.float32)}
    return {"weight": np.full(c, 0.0 if options.zero_gamma else 1.0, dtype=np.float32),
            "bias": np.zeros(c, np.float32)}


def _bn_values(c: Shape, rng: "np.random.Generator", options: InitOptions) -> "dict[str, np.ndarray]":
    """Scale, shift and running statistics of a batch norm (the draw order is BN's own)."""
    import numpy as np
    out = _affine_values(c, rng, options)
    if options.realistic_norm:
        out["running_mean"] = rng.normal(0.0, 0.1, c).astype(np.float32)
        out["running_var"] = rng.uniform(0.75, 1.25, c).astype(np.float32)
    else:
        out["running_mean"] = np.zeros(c, np.float32)
        out["running_var"] = np.ones(c, np.float32)
    return out


class BatchNormOp(OpDef):
    kind = "bn"
    model = BatchNorm
    role = "norm"
    buffers = frozenset({"running_mean", "running_var", "num_batches_tracked"})
    torch_init = (("nn.BatchNorm2d", ("nn.init.ones_(m.weight)", "nn.init.zeros_(m.bias)")),)
    folds_into_conv = True

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"channels": inputs[0][0], "eps": values["eps"], "momentum": values["momentum"]}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        expect_channels(self.kind, attrs["channels"], inputs[0])
        return inputs[0]

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        c = (attrs["channels"],)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c,
                "num_batches_tracked": ()}

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        import numpy as np
        out = _bn_values(tensors["weight"], rng, options)
        out["num_batches_tracked"] = np.array(0, dtype=np.int64)
        return out

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [in_channels]
        if src["eps"] != 1e-5:
            args.append(f"eps={src['eps']!r}")
        if src["momentum"] != 0.1:
            args.append(f"momentum={src['momentum']!r}")
        return f"nn.BatchNorm2d({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        ins = [inputs[0], *(b.init(f"{node}.{t}", b.weight(f"{node}.{t}")) for t in BN_TENSORS)]
        return b.add("BatchNormalization", node, ins, node, epsilon=float(attrs["eps"]))

    def fold_into_conv(self, b: Any, node: str, attrs: Attrs, weight: "np.ndarray",
                       bias: "np.ndarray | None") -> "tuple[np.ndarray, np.ndarray]":
        """y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta, computed in float64."""
        import numpy as np
        gamma, beta, mean, var = (b.weight(f"{node}.{t}").astype(np.float64) for t in BN_TENSORS)
        scale = gamma / np.sqrt(var + float(attrs["eps"]))
        w = np.multiply(weight, scale[:, None, None, None], dtype=np.float64)
        b0 = bias.astype(np.float64) if bias is not None else np.zeros_like(mean)
        return w.astype(np.float32), ((b0 - mean) * scale + beta).astype(np.float32)


FROZEN_BN_CLASS = '''
class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine terms are fixed buffers, never trained (the
    state_dict keys of torchvision.ops.FrozenBatchNorm2d)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: object
    ) -> None:
        # a BatchNorm2d checkpoint also counts its training steps; frozen statistics have none
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale[:, None, None] + shift[:, None, None]
'''


class FrozenBatchNormOp(BatchNormOp):
    """A batch norm that never updates: every tensor is a buffer; ONNX treats it as BN."""

    kind = "frozen_bn"
    model = FrozenBatchNorm
    buffers = frozenset(BN_TENSORS)
    torch_helpers = (FROZEN_BN_CLASS,)
    torch_init = ()  # the helper's constructor already sets ones, zeros, zeros, ones

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"channels": inputs[0][0], "eps": values["eps"]}

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        return dict.fromkeys(BN_TENSORS, (attrs["channels"],))

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        return _bn_values(tensors["weight"], rng, options)

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        eps = f", eps={src['eps']!r}" if src["eps"] != 1e-5 else ""
        return f"FrozenBatchNorm2d({in_channels}{eps})"


def _operand(source: str) -> str:
    """Source text safe as an operand of `//`: a name, a number or a parenthesised expression as
    it is, anything else in parentheses."""
    if source.isidentifier() or source.isdigit():
        return source
    depth = 0
    for i, ch in enumerate(source):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return source if i == len(source) - 1 and i > 0 else f"({source})"
    return f"({source})"


def grouping(values: Mapping[str, Any], channels: int) -> dict[str, Any]:
    """`groups`, from the spec's `groups` or `channels_per_group` (kept, so that a width it does
    not divide is reported in the spec's own terms): GroupNorm's and EvoNorm's rule."""
    cpg = values.get("channels_per_group")
    if cpg is None:
        return {"groups": values["groups"]}
    return {"channels_per_group": cpg, "groups": channels // cpg}


def groups_source(src: Mapping[str, Any], in_channels: str) -> str:
    """The generated code's group count: the spec's `groups`, or in_channels // channels_per_group
    (folded when both are numbers)."""
    if "channels_per_group" not in src:
        return text(src["groups"])
    cpg = text(src["channels_per_group"])
    if in_channels.isdigit() and cpg.isdigit():
        return str(int(in_channels) // int(cpg))
    return f"{_operand(in_channels)} // {_operand(cpg)}"


def _shape_constant(b: Any, name: str, dims: list[int]) -> str:
    """A Reshape target as a Constant node rather than an initializer: shape inference needs
    its values, and `verify` drops initializer data before inferring shapes."""
    import numpy as np
    from onnx import (
        numpy_helper,  # only at export: the op table does not need onnx to load
    )

    value = numpy_helper.from_array(np.array(dims, dtype=np.int64), name)
    return b.add("Constant", name, [], name, value=value)


class GroupNormOp(OpDef):
    kind = "gn"
    model = GroupNorm
    sizes = {"groups": 1, "channels_per_group": 1}
    role = "norm"

    def sources(self, op: GroupNorm, ctx: Context) -> dict[str, Any]:
        out = super().sources(op, ctx)
        if "channels_per_group" not in out:
            out.setdefault("groups", "32")
        return out

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        c = inputs[0][0]
        return {"channels": c, "eps": values["eps"], "affine": values["affine"],
                **grouping(values, c)}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        c = attrs["channels"]
        if len(x) != 3:
            raise ShapeError(f"gn needs a feature map, got {'x'.join(map(str, x))}")
        expect_channels(self.kind, c, x)
        cpg = attrs.get("channels_per_group")
        if cpg is not None and c % cpg:
            raise ShapeError(f"channels_per_group={cpg} must divide the channels ({c})")
        if cpg is None and c % attrs["groups"]:
            raise ShapeError(f"groups={attrs['groups']} must divide the channels ({c})")
        return x

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        c = (attrs["channels"],)
        return {"weight": c, "bias": c} if attrs["affine"] else {}

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        return _affine_values(tensors["weight"], rng, options) if tensors else {}

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [groups_source(src, in_channels), in_channels]
        if src["eps"] != 1e-5:
            args.append(f"eps={src['eps']!r}")
        if not src["affine"]:
            args.append("affine=False")
        return f"nn.GroupNorm({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """Reshape to (N, G, -1), InstanceNormalization with unit scale (each group is then one
        'instance'), reshape back, per-channel Mul and Add: ops whose meaning holds from opset 13 to 26
        (GroupNormalization arrived in 18 with per-group scale and was redefined in 21). The
        batch dimension is copied (0 in the shape), so a dynamic batch works."""
        import numpy as np
        c, h, w = attrs["shape"]
        g = attrs["groups"]
        grouped = _shape_constant(b, f"{node}.grouped_shape", [0, g, -1])
        y = b.add("Reshape", f"{node}.group", [inputs[0], grouped], f"{node}.group",
                  shape=(g, c // g * h * w))
        ones = b.const(f"{node}.unit_scale", np.ones(g))
        zeros = b.const(f"{node}.zero_shift", np.zeros(g))
        y = b.add("InstanceNormalization", f"{node}.normalize", [y, ones, zeros],
                  f"{node}.normalize", shape=(g, c // g * h * w), epsilon=float(attrs["eps"]))
        if b.dynamic_hw:  # back to the input's own shape, whatever its height and width
            back = b.add("Shape", f"{node}.input_shape", [inputs[0]], f"{node}.input_shape")
        else:  # a constant keeps every shape inferable
            back = _shape_constant(b, f"{node}.shape", [0, c, h, w])
        if not attrs["affine"]:
            return b.add("Reshape", node, [y, back], node)
        y = b.add("Reshape", f"{node}.ungroup", [y, back], f"{node}.ungroup", shape=(c, h, w))
        weight = b.init(f"{node}.weight", b.weight(f"{node}.weight").reshape(c, 1, 1))
        bias = b.init(f"{node}.bias", b.weight(f"{node}.bias").reshape(c, 1, 1))
        y = b.add("Mul", f"{node}.scale", [y, weight], f"{node}.scale", shape=(c, h, w))
        return b.add("Add", node, [y, bias], node)
