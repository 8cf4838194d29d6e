"""2-D convolution: `nn.Conv2d`, ONNX `Conv` (with a following norm folded into its weights), and
the weight-standardised convolution of BiT ResNet-V2 (timm's StdConv2d)."""

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StrictBool

from ..language.expr import Expr
from .base import (
    Attrs,
    Context,
    Count,
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

if TYPE_CHECKING:
    import numpy as np


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


def same_padding(kernel: str, dilation: str) -> str:
    """dilation * (kernel - 1) // 2 as short source text: `dilation` itself for a 3x3 kernel."""
    k = Expr.parse(kernel)
    if k.constant and isinstance(k.value_or_none(), int):
        half = (k.evaluate({}) - 1) // 2
        if half == 0:
            return "0"
        d = Expr.parse(dilation)
        if d.constant and d.value_or_none() is not None:
            return str(half * d.evaluate({}))
        return d.source if half == 1 else fold_constants(f"{half} * ({d.source})")
    return fold_constants(f"({dilation}) * (({kernel}) - 1) // 2")


class ConvOp(OpDef):
    kind = "conv"
    model = Conv
    sizes = {"channels": 1, "kernel": 1, "stride": 1, "dilation": 1, "groups": 1, "padding": 0}
    role = "conv"
    classifier = True  # a 1x1 conv on the pooled map (timm's ClassifierHead with use_conv)
    torch_init = (("nn.Conv2d", ('nn.init.kaiming_normal_(m.weight, mode="fan_out", '
                                 'nonlinearity="relu")',)),)

    def sources(self, op: Conv, ctx: Context) -> dict[str, Any]:
        out = super().sources(op, ctx)
        out.setdefault("bias", ctx.conv_bias)
        if "padding" not in out:
            out["padding"] = same_padding(out["kernel"], out["dilation"])
        return out

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"in_channels": inputs[0][0], "out_channels": self.channels(values, [inputs[0][0]]),
                "kernel": values["kernel"], "stride": values["stride"],
                "padding": values["padding"], "dilation": values["dilation"],
                "groups": values["groups"], "bias": values["bias"]}

    def channels(self, fields: Mapping[str, Any], inputs: Sequence[Count]) -> Count:
        return fields["channels"]

    def label(self, exprs: Mapping[str, Expr]) -> str:
        """`conv3x3` where the kernel is a constant."""
        k = exprs.get("kernel")
        return f"{self.kind}{k.source}x{k.source}" if k is not None and k.constant else self.kind

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

    def pycls_counts(self, attrs: Attrs, macs: int) -> tuple[int, int]:
        out = math.prod(attrs["shape"])
        return macs + (out if attrs["bias"] else 0), out

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
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

    def onnx_weight(self, b: Any, node: str, attrs: Attrs) -> "np.ndarray":
        """The filters the convolution applies (a subclass may transform the stored ones)."""
        return b.weight(f"{node}.weight")

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        weight = self.onnx_weight(b, node, attrs)
        bias = b.weight(f"{node}.bias") if attrs["bias"] else None
        weight, bias, out_node = b.fold_following_norm(node, weight, bias)
        k, p, s, d = attrs["kernel"], attrs["padding"], attrs["stride"], attrs["dilation"]
        ins = [inputs[0], b.init(f"{node}.weight", weight)]
        if bias is not None:
            ins.append(b.init(f"{node}.bias", bias))
        return b.add("Conv", node, ins, out_node, kernel_shape=[k, k], pads=[p, p, p, p],
                     strides=[s, s], dilations=[d, d], group=attrs["groups"])


class StdConv(Conv):
    """Weight-standardised 2-D convolution (Qiao et al.), as timm's StdConv2d in BiT ResNet-V2:
    each output channel's filter is shifted to zero mean and divided by sqrt(biased variance +
    eps) before convolving. `eps` defaults to timm's 1e-6 (BiT's checkpoints use 1e-8)."""

    op: Literal["std_conv"]  # type: ignore[assignment]  # the subclass's own tag
    eps: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 1e-6


STD_CONV_CLASS = '''
class StdConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (Qiao et al., as in BiT ResNet-V2): every output
    channel's filter is used at zero mean and unit (biased) variance, so training sees a
    well-scaled weight whatever its raw values."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = self.weight.reshape(1, self.out_channels, -1)
        # batch_norm over each filter, as timm's StdConv2d computes it
        if flat.shape[-1] > 1:
            flat = nn.functional.batch_norm(
                flat, None, None, training=True, momentum=0.0, eps=self.eps
            )
        else:  # a one-value filter standardises to zero (batch_norm refuses one value)
            flat = flat - flat
        weight = flat.reshape_as(self.weight)
        return nn.functional.conv2d(
            x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
'''


class StdConvOp(ConvOp):
    """A conv whose filters are standardised on use; tensors, parameters and MACs are a conv's."""

    kind = "std_conv"
    model = StdConv
    classifier = False  # weight standardisation is for the features; heads classify with a conv
    torch_helpers = (STD_CONV_CLASS,)
    torch_init = (("StdConv2d", ConvOp.torch_init[0][1]),)

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {**super().resolve(values, inputs), "eps": values["eps"]}

    def label(self, exprs: Mapping[str, Expr]) -> str:
        return self.kind  # BiT's docstrings name the op alone

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        conv = super().torch_module(src, in_channels, inplace)
        eps = f", eps={src['eps']!r}" if src["eps"] != 1e-6 else ""
        return f"StdConv2d{conv.removeprefix('nn.Conv2d')[:-1]}{eps})"

    def onnx_weight(self, b: Any, node: str, attrs: Attrs) -> "np.ndarray":
        """The standardised filters, computed in float64 at export: ONNX then sees a plain Conv
        (and a following norm still folds into it)."""
        import numpy as np
        w = super().onnx_weight(b, node, attrs)
        flat = w.reshape(w.shape[0], -1).astype(np.float64)
        mean = flat.mean(axis=1, keepdims=True)
        var = flat.var(axis=1, keepdims=True)  # biased, as the torch forward
        return ((flat - mean) / np.sqrt(var + float(attrs["eps"]))).reshape(w.shape)
