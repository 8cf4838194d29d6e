"""Normalisation-activation layers that need no batch statistics: the filter response norm with a
thresholded linear unit (Singh & Krishnan, FRN + TLU; timm's FilterResponseNormTlu2d) and the
sample-based EvoNorm-S0 (Liu et al.; timm's EvoNorm2dS0). Each carries its own activation (the
TLU, the swish-like gate), so a network that uses them in place of norm + act sets `defaults:
{norm: frn, act: identity}`. Both lower to plain ONNX ops that every opset from 13 has."""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator

from .base import (
    Attrs,
    InitOptions,
    OpDef,
    OpModel,
    Shape,
    ShapeError,
    Size,
    expect_channels,
)
from .multipath import _onnx_axes
from .norm import _shape_constant, grouping, groups_source

if TYPE_CHECKING:
    import numpy as np

Eps = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class FilterResponseNorm(OpModel):
    """x / sqrt(mean over positions of x^2 + eps) per channel, a per-channel affine, then (unless
    `apply_act` is false) max(x, tau) with a learned per-channel threshold tau."""

    op: Literal["frn"]
    eps: Eps = 1e-5
    apply_act: StrictBool = True


class EvoNormS0(OpModel):
    """x * sigmoid(v * x) / std over each group of channels and all positions (unless
    `apply_act` is false: no gate, no division), then a per-channel affine. `groups` groups (32),
    or groups of `channels_per_group` channels."""

    op: Literal["evonorm_s0"]
    groups: Size | None = None
    channels_per_group: Size | None = None
    eps: Eps = 1e-5
    apply_act: StrictBool = True

    @field_validator("channels_per_group")
    @classmethod
    def _one_grouping(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("groups") is not None:
            raise ValueError("give either groups or channels_per_group, not both")
        return value


FRN_CLASS = '''
class FilterResponseNormTlu2d(nn.Module):
    """Filter response normalisation with a thresholded linear unit (Singh & Krishnan): no batch
    statistics, so it behaves the same at any batch size."""

    def __init__(
        self, num_features: int, apply_act: bool = True, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.tau = nn.Parameter(torch.zeros(num_features)) if apply_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nu2 = x.square().float().mean(dim=(2, 3), keepdim=True)
        x = x * nu2.add(self.eps).rsqrt().to(x.dtype)
        x = x * self.weight[:, None, None] + self.bias[:, None, None]
        return x if self.tau is None else torch.maximum(x, self.tau[:, None, None])
'''

EVONORM_CLASS = '''
class EvoNorm2dS0(nn.Module):
    """EvoNorm-S0 (Liu et al.): x * sigmoid(v * x) divided by the standard deviation of each
    group of channels, then a per-channel affine; no batch statistics."""

    def __init__(
        self,
        num_features: int,
        groups: int = 32,
        apply_act: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.v = nn.Parameter(torch.ones(num_features)) if apply_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is not None:
            n, c, h, w = x.shape
            grouped = x.reshape(n, self.groups, c // self.groups, h, w).float()
            var = grouped.var(dim=(2, 3, 4), unbiased=False, keepdim=True)
            std = var.add(self.eps).sqrt().to(x.dtype).expand(grouped.shape)
            x = x * (x * self.v[:, None, None]).sigmoid() / std.reshape(n, c, h, w)
        return x * self.weight[:, None, None] + self.bias[:, None, None]
'''


def _per_channel(b: Any, node: str, name: str, c: int) -> str:
    return b.init(f"{node}.{name}", b.weight(f"{node}.{name}").reshape(c, 1, 1))


class _ResponseNormOp(OpDef):
    role = "norm"
    carrier: str = ""  # the tensor of the built-in activation: tau or v

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        if len(x) != 3:
            raise ShapeError(f"{self.kind} needs a feature map, got {'x'.join(map(str, x))}")
        expect_channels(self.kind, attrs["channels"], x)
        return x

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        c = (attrs["channels"],)
        out = {"weight": c, "bias": c}
        if attrs["apply_act"]:
            out[self.carrier] = c
        return out

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        """timm's init (ones, zeros, and tau zeros or v ones); with realistic norms, all drawn,
        so that a swapped or ignored tensor shows in the outputs."""
        import numpy as np
        c = tensors["weight"]
        if options.realistic_norm:
            out = {"weight": rng.uniform(0.5, 1.5, c), "bias": rng.normal(0.0, 0.1, c)}
            if self.carrier in tensors:
                out[self.carrier] = rng.normal(-0.2, 0.1, c) if self.carrier == "tau" \
                    else rng.uniform(0.5, 1.5, c)
        else:
            out = {"weight": np.full(c, 0.0 if options.zero_gamma else 1.0), "bias": np.zeros(c)}
            if self.carrier in tensors:
                out[self.carrier] = np.zeros(c) if self.carrier == "tau" else np.ones(c)
        return {k: v.astype(np.float32) for k, v in out.items()}

    def _affine(self, b: Any, node: str, attrs: Attrs, y: str) -> str:
        c = attrs["channels"]
        y = b.add("Mul", f"{node}.scale", [y, _per_channel(b, node, "weight", c)], f"{node}.scale",
                  shape=attrs["shape"])
        out = f"{node}.shift" if self.carrier == "tau" and attrs["apply_act"] else node
        return b.add("Add", out, [y, _per_channel(b, node, "bias", c)], out,
                     shape=attrs["shape"] if out != node else None)


class FilterResponseNormOp(_ResponseNormOp):
    kind = "frn"
    model = FilterResponseNorm
    carrier = "tau"
    torch_helpers = (FRN_CLASS,)

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"channels": inputs[0][0], "eps": values["eps"], "apply_act": values["apply_act"]}

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [in_channels]
        if not src["apply_act"]:
            args.append("apply_act=False")
        if src["eps"] != 1e-5:
            args.append(f"eps={src['eps']!r}")
        return f"FilterResponseNormTlu2d({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        import numpy as np
        x, shape = inputs[0], attrs["shape"]
        c = shape[0]
        sq = b.add("Mul", f"{node}.square", [x, x], f"{node}.square", shape=shape)
        nu2 = _onnx_axes(b, f"{node}.nu2", "ReduceMean", [sq], [2, 3], f"{node}.nu2", keepdims=1)
        b.value_info(nu2, (c, 1, 1))
        eps = b.const(f"{node}.eps", np.array(attrs["eps"], dtype=np.float32))
        s = b.add("Add", f"{node}.nu2_eps", [nu2, eps], f"{node}.nu2_eps", shape=(c, 1, 1))
        s = b.add("Sqrt", f"{node}.rms", [s], f"{node}.rms", shape=(c, 1, 1))
        y = b.add("Div", f"{node}.normalize", [x, s], f"{node}.normalize", shape=shape)
        y = self._affine(b, node, attrs, y)
        if not attrs["apply_act"]:
            return y
        return b.add("Max", node, [y, _per_channel(b, node, "tau", c)], node)


class EvoNormS0Op(_ResponseNormOp):
    kind = "evonorm_s0"
    model = EvoNormS0
    sizes = {"groups": 1, "channels_per_group": 1}
    carrier = "v"
    torch_helpers = (EVONORM_CLASS,)

    def sources(self, op: Any, ctx: Any) -> dict[str, Any]:
        out = super().sources(op, ctx)
        if "channels_per_group" not in out:
            out.setdefault("groups", "32")
        return out

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        c = inputs[0][0]
        return {"channels": c, "eps": values["eps"], "apply_act": values["apply_act"],
                **grouping(values, c)}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        x = super().shape(attrs, inputs)
        c, g = attrs["channels"], attrs["groups"]
        cpg = attrs.get("channels_per_group")
        if (cpg is not None and c % cpg) or (cpg is None and c % g) or g < 1:
            what = f"channels_per_group={cpg}" if cpg is not None else f"groups={g}"
            raise ShapeError(f"{what} must divide the channels ({c})")
        return x

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        groups = groups_source(src, in_channels)
        args = [in_channels]
        if groups != "32":
            args.append(f"groups={groups}")
        if not src["apply_act"]:
            args.append("apply_act=False")
        if src["eps"] != 1e-5:
            args.append(f"eps={src['eps']!r}")
        return f"EvoNorm2dS0({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """x * sigmoid(v x), divided per group by sqrt(E[(x - E x)^2] + eps) over (N, G, -1),
        then the affine. The batch dimension is copied (0 in the shape)."""
        import numpy as np
        x, shape = inputs[0], attrs["shape"]
        if not attrs["apply_act"]:
            return self._affine(b, node, attrs, x)
        c, h, w = shape
        g = attrs["groups"]
        flat = (g, c // g * h * w)
        grouped_shape = _shape_constant(b, f"{node}.grouped_shape", [0, g, -1])
        xg = b.add("Reshape", f"{node}.group", [x, grouped_shape], f"{node}.group", shape=flat)
        mean = _onnx_axes(b, f"{node}.mean", "ReduceMean", [xg], [2], f"{node}.mean", keepdims=1)
        b.value_info(mean, (g, 1))
        d = b.add("Sub", f"{node}.centred", [xg, mean], f"{node}.centred", shape=flat)
        d2 = b.add("Mul", f"{node}.centred_sq", [d, d], f"{node}.centred_sq", shape=flat)
        var = _onnx_axes(b, f"{node}.var", "ReduceMean", [d2], [2], f"{node}.var", keepdims=1)
        b.value_info(var, (g, 1))
        eps = b.const(f"{node}.eps", np.array(attrs["eps"], dtype=np.float32))
        std = b.add("Add", f"{node}.var_eps", [var, eps], f"{node}.var_eps", shape=(g, 1))
        std = b.add("Sqrt", f"{node}.std", [std], f"{node}.std", shape=(g, 1))
        vx = b.add("Mul", f"{node}.vx", [x, _per_channel(b, node, "v", c)], f"{node}.vx",
                   shape=shape)
        gate = b.add("Sigmoid", f"{node}.gate", [vx], f"{node}.gate", shape=shape)
        gated = b.add("Mul", f"{node}.gated", [x, gate], f"{node}.gated", shape=shape)
        gg = b.add("Reshape", f"{node}.gated_group", [gated, grouped_shape], f"{node}.gated_group",
                   shape=flat)
        y = b.add("Div", f"{node}.normalize", [gg, std], f"{node}.normalize", shape=flat)
        if b.dynamic_hw:
            back = b.add("Shape", f"{node}.input_shape", [x], f"{node}.input_shape")
        else:
            back = _shape_constant(b, f"{node}.shape", [0, c, h, w])
        y = b.add("Reshape", f"{node}.ungroup", [y, back], f"{node}.ungroup", shape=shape)
        return self._affine(b, node, attrs, y)
