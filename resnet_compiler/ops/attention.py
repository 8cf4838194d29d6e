"""Channel attention: squeeze-and-excitation (Hu et al.), as timm's SEModule computes it, and
efficient channel attention (Wang et al., ECA-Net), as timm's EcaModule computes it."""

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator

from ..language.expr import MAKE_DIVISIBLE_SOURCE, make_divisible
from .act import PARAMETERS, ActFn, ActOp
from .base import (
    Attrs,
    InitOptions,
    OpDef,
    OpModel,
    PositiveInt,
    Shape,
    ShapeError,
    Size,
    expect_channels,
    kaiming_fan_out,
    text,
    uniform_fan_in,
)

if TYPE_CHECKING:
    import numpy as np

Finite = Annotated[float, Field(allow_inf_nan=False)]
Gate = Literal["sigmoid", "hard_sigmoid"]
# The options added after SE first shipped, and their defaults. A spec that leaves them at their
# defaults serialises (and hashes) as before, and its node attributes and code are unchanged.
SE_OPTIONS: dict[str, Any] = {"act": "relu", "gate": "sigmoid", "bias": True}
WIDTH_FIELDS = ("channels", "ratio", "reduction")  # in field order
DEFAULT_REDUCTION = 16


class SqueezeExcite(OpModel):
    """Squeeze-and-excitation: global average pool, 1x1 conv down to `channels`, activation
    `act` (relu), 1x1 conv back, gate `gate` (sigmoid or hard_sigmoid), as timm's SEModule. The
    width is `channels`, or make_divisible(C / reduction, divisor, round_limit=0) (timm's rule,
    reduction 16 by default), or make_divisible(C * ratio, divisor, round_limit=0) (timm's
    rd_ratio); give at most one of them. `bias: false` drops the two convs' biases."""

    op: Literal["se"]
    channels: Size | None = None
    # ratio before reduction: a field's validator sees the fields declared before it
    ratio: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = Field(
        None, exclude_if=lambda v: v is None,
        description="The width as a fraction of the input channels (timm's rd_ratio).")
    reduction: Size = DEFAULT_REDUCTION
    divisor: PositiveInt = 8
    act: ActFn = Field("relu", exclude_if=lambda v: v == SE_OPTIONS["act"],
                       description="The activation between the two convs (an act fn).")
    gate: Gate = Field("sigmoid", exclude_if=lambda v: v == SE_OPTIONS["gate"],
                       description="The gating function: sigmoid or hard_sigmoid.")
    bias: StrictBool = Field(True, exclude_if=lambda v: v is True,
                             description="Whether the two 1x1 convs have biases.")

    @field_validator("ratio", "reduction")
    @classmethod
    def _one_width(cls, value: Any, info: ValidationInfo) -> Any:
        """Two width rules would contradict each other; refuse rather than pick one. (A field's
        validator runs only when the spec gives it, so a default reduction never clashes.)"""
        earlier = [k for k in WIDTH_FIELDS[:WIDTH_FIELDS.index(str(info.field_name))]
                   if info.data.get(k) is not None]
        # the default reduction restated is no second rule (a dumped spec restates it)
        if earlier and value != DEFAULT_REDUCTION:
            raise ValueError(f"give {earlier[0]} or {info.field_name}, not both (they set the"
                             " same width)")
        return value


SE_CLASS = '''
class SEModule(nn.Module):
    """Channel attention (Hu et al.): pool, 1x1 conv, ReLU, 1x1 conv, sigmoid gate."""

    def __init__(
        self,
        channels: int,
        rd_channels: int | None = None,
        reduction: int = 16,
        divisor: int = 8,
    ) -> None:
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

# The same class once a network uses act, gate or bias: the modules come in as arguments.
SE_CLASS_OPTIONS = '''
class SEModule(nn.Module):
    """Channel attention (Hu et al.): pool, 1x1 conv down, activation, 1x1 conv up, gate (ReLU
    and sigmoid unless given)."""

    def __init__(
        self,
        channels: int,
        rd_channels: int | None = None,
        reduction: int = 16,
        divisor: int = 8,
        act: nn.Module | None = None,
        gate: nn.Module | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if rd_channels is None:
            rd_channels = make_divisible(channels / reduction, divisor, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1, bias=bias)
        self.act = nn.ReLU(inplace=True) if act is None else act
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1, bias=bias)
        self.gate = nn.Sigmoid() if gate is None else gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.fc2(self.act(self.fc1(scale)))
        return x * self.gate(scale)
'''
GATE_MODULES = {"sigmoid": "nn.Sigmoid()", "hard_sigmoid": "nn.Hardsigmoid()"}


def _act_attrs(fn: str) -> dict[str, Any]:
    """The act op's attributes for `fn` with its parameter (if any) at its default, as timm's
    SEModule builds its act layer."""
    out: dict[str, Any] = {"fn": fn}
    if fn in PARAMETERS:
        field, default = PARAMETERS[fn]
        out[field] = default
    return out


def _operand(source: str) -> str:
    """Source text safe as a factor of a product."""
    return source if source.isidentifier() or source.isdigit() else f"({source})"


class SqueezeExciteOp(OpDef):
    kind = "se"
    model = SqueezeExcite
    sizes = {"channels": 1, "reduction": 1}
    role = "attention"
    torch_helpers = (MAKE_DIVISIBLE_SOURCE, SE_CLASS)

    def torch_helpers_for(self, sources: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
        """The helpers for the se ops of one network (their sources): the class takes act, gate
        and bias only where one of them is used, so networks without them keep its first text."""
        if any(k in src for src in sources for k in SE_OPTIONS):
            return (MAKE_DIVISIBLE_SOURCE, SE_CLASS_OPTIONS)
        return self.torch_helpers

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        """Width by the one rule given; act, gate and bias only where they differ from the
        defaults (absent means relu, sigmoid, with biases)."""
        c = inputs[0][0]
        rd = values.get("channels")
        if rd is None and "ratio" in values:
            rd = make_divisible(c * values["ratio"], values["divisor"], round_limit=0.0)
        elif rd is None:
            rd = make_divisible(c / values["reduction"], values["divisor"], round_limit=0.0)
        out = {"channels": c, "rd_channels": rd}
        out.update({k: values[k] for k, default in SE_OPTIONS.items()
                    if values.get(k, default) != default})
        return out

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        expect_channels("se", attrs["channels"], inputs[0])
        return inputs[0]

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        c, r = attrs["channels"], attrs["rd_channels"]
        out = {"fc1.weight": (r, c, 1, 1), "fc1.bias": (r,), "fc2.weight": (c, r, 1, 1),
               "fc2.bias": (c,)}
        if not attrs.get("bias", True):
            del out["fc1.bias"], out["fc2.bias"]
        return out

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        return 2 * attrs["channels"] * attrs["rd_channels"]

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        out = {}
        for fc in ("fc1", "fc2"):
            w = tensors[f"{fc}.weight"]
            out[f"{fc}.weight"] = kaiming_fan_out(rng, w)
            if f"{fc}.bias" in tensors:
                out[f"{fc}.bias"] = uniform_fan_in(rng, tensors[f"{fc}.bias"], math.prod(w[1:]))
        return out

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        call = self._width_call(src, in_channels)
        options = self._option_args(src)  # the class that takes them comes from torch_helpers_for
        return f"{call[:-1]}, {', '.join(options)})" if options else call

    def _width_call(self, src: Mapping[str, Any], in_channels: str) -> str:
        if "channels" in src:
            return f"SEModule({in_channels}, {text(src['channels'])})"
        if "ratio" in src:
            width = f"{_operand(in_channels)} * {src['ratio']!r}"
            if in_channels.isdigit():
                width = str(make_divisible(int(in_channels) * src["ratio"], src["divisor"],
                                           round_limit=0.0))
            else:
                width = f"make_divisible({width}, {src['divisor']}, round_limit=0.0)"
            return f"SEModule({in_channels}, {width})"
        args = [in_channels]
        if text(src["reduction"]) != "16":
            args.append(f"reduction={text(src['reduction'])}")
        if src["divisor"] != 8:
            args.append(f"divisor={src['divisor']!r}")
        return f"SEModule({', '.join(args)})"

    @staticmethod
    def _option_args(src: Mapping[str, Any]) -> list[str]:
        """Constructor arguments for act, gate and bias where they differ from the defaults."""
        args = []
        if src.get("act", "relu") != "relu":
            args.append(f"act={ActOp().torch_module(_act_attrs(src['act']), '', True)}")
        if src.get("gate", "sigmoid") != "sigmoid":
            args.append(f"gate={GATE_MODULES[src['gate']]}")
        if not src.get("bias", True):
            args.append("bias=False")
        return args

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """Pool, fc1, act, fc2, gate, Mul: the emitted module's computation, node for node."""
        c, r = attrs["channels"], attrs["rd_channels"]
        x = inputs[0]
        y = b.add("GlobalAveragePool", f"{node}.pool", [x], f"{node}.pool", shape=(c, 1, 1))
        for fc, width in (("fc1", r), ("fc2", c)):
            ins = [y, b.init(f"{node}.{fc}.weight", b.weight(f"{node}.{fc}.weight"))]
            if attrs.get("bias", True):
                ins.append(b.init(f"{node}.{fc}.bias", b.weight(f"{node}.{fc}.bias")))
            y = b.add("Conv", f"{node}.{fc}", ins, f"{node}.{fc}", shape=(width, 1, 1),
                      kernel_shape=[1, 1])
            if fc == "fc1":
                y = self._act(b, f"{node}.act", attrs.get("act", "relu"), y, r)
        if attrs.get("gate", "sigmoid") == "hard_sigmoid":
            y = b.add("HardSigmoid", f"{node}.gate", [y], f"{node}.gate", shape=(c, 1, 1),
                      alpha=1.0 / 6.0, beta=0.5)
        else:
            y = b.add("Sigmoid", f"{node}.gate", [y], f"{node}.gate", shape=(c, 1, 1))
        return b.add("Mul", node, [x, y], node)

    @staticmethod
    def _act(b: Any, name: str, fn: str, x: str, width: int) -> str:
        """relu as before (one Relu node with its shape); any other fn by the act op's lowering."""
        if fn == "relu":
            return b.add("Relu", name, [x], name, shape=(width, 1, 1))
        return ActOp().onnx(b, name, _act_attrs(fn), [x])


# ---- efficient channel attention ---------------------------------------------------------------

ECA_RULE = {"gamma": 2.0, "beta": 1.0}  # the paper's kernel rule

class Eca(OpModel):
    """Efficient channel attention (Wang et al., ECA-Net), as timm's EcaModule: global average
    pool, a 1-D convolution of `kernel` taps across the channels (no bias, zero padding), sigmoid
    gate. Without `kernel` the kernel follows the channel count C as in the paper and timm:
    t = int(|log2(C) + beta| / gamma), made odd by adding 1, at least 3."""

    op: Literal["eca"]
    kernel: Size | None = Field(None, description="An odd kernel size; default: from the channels.")
    # left out of a dump at their defaults, so a dumped spec with a kernel validates again
    gamma: Annotated[float, Field(gt=0, allow_inf_nan=False)] = Field(
        ECA_RULE["gamma"], exclude_if=lambda v: v == ECA_RULE["gamma"])
    beta: Finite = Field(ECA_RULE["beta"], exclude_if=lambda v: v == ECA_RULE["beta"])

    @field_validator("gamma", "beta")
    @classmethod
    def _kernel_or_rule(cls, value: float, info: ValidationInfo) -> float:
        """gamma and beta only shape the kernel rule; beside an explicit kernel they would be
        silently ignored."""
        if info.data.get("kernel") is not None:
            raise ValueError(f"{info.field_name} sets the kernel from the channels; give it or"
                             " kernel, not both")
        return value


def eca_kernel(channels: int, gamma: float, beta: float) -> int:
    """timm's EcaModule kernel size for `channels` (math.log(C, 2), as timm writes it)."""
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


ECA_CLASS = '''
class EfficientChannelAttention(nn.Module):
    """Channel attention (Wang et al., ECA-Net): a 1-D conv across the pooled channels, then a
    sigmoid gate. Without `kernel_size` the kernel follows the channel count (the paper's rule)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int | None = None,
        gamma: float = 2.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        if kernel_size is None:
            # on the CPU even when the model is built on another device (or on meta)
            c = torch.tensor(float(channels), dtype=torch.float64, device="cpu")
            log_c = c.log2().item()
            t = int(abs(log_c + beta) / gamma)
            kernel_size = max(t if t % 2 else t + 1, 3)
        self.conv = nn.Conv1d(
            1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False
        )
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3)).view(x.shape[0], 1, -1)
        scale = self.gate(self.conv(scale)).view(x.shape[0], -1, 1, 1)
        return x * scale
'''


class EcaOp(OpDef):
    kind = "eca"
    model = Eca
    sizes = {"kernel": 1}
    role = "attention"
    torch_helpers = (ECA_CLASS,)

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        c = inputs[0][0]
        rule = {**ECA_RULE, **values}
        k = values.get("kernel") or eca_kernel(c, rule["gamma"], rule["beta"])
        return {"channels": c, "kernel": k}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        if len(inputs[0]) != 3:
            raise ShapeError("eca needs a feature map")
        expect_channels("eca", attrs["channels"], inputs[0])
        if attrs["kernel"] % 2 == 0:
            raise ShapeError(f"the eca kernel must be odd (it pads equally on both sides), got"
                             f" {attrs['kernel']}")
        return inputs[0]

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        return {"conv.weight": (1, 1, attrs["kernel"])}

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        return attrs["channels"] * attrs["kernel"]

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        """nn.Conv1d's own initialisation (the generated _init_weights leaves 1-D convs alone)."""
        shape = tensors["conv.weight"]
        return {"conv.weight": uniform_fan_in(rng, shape, math.prod(shape[1:]))}

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [in_channels]
        if "kernel" in src:
            args.append(f"kernel_size={text(src['kernel'])}")
        else:
            args += [f"{k}={float(src[k])!r}" for k in ECA_RULE if k in src]
        return f"EfficientChannelAttention({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """Pool, reshape to (N, 1, C), 1-D Conv, Sigmoid, reshape to (N, C, 1, 1), Mul; the
        batch stays -1 in both shapes, so it is dynamic."""
        import numpy as np
        c, k = attrs["channels"], attrs["kernel"]
        p = (k - 1) // 2
        x = inputs[0]
        y = b.add("GlobalAveragePool", f"{node}.pool", [x], f"{node}.pool", shape=(c, 1, 1))
        row = b.const(f"{node}.row_shape", np.array([-1, 1, c]), dtype="<i8")
        y = b.add("Reshape", f"{node}.row", [y, row], f"{node}.row", shape=(1, c))
        weight = b.init(f"{node}.conv.weight", b.weight(f"{node}.conv.weight"))
        y = b.add("Conv", f"{node}.conv", [y, weight], f"{node}.conv", shape=(1, c),
                  kernel_shape=[k], pads=[p, p])
        y = b.add("Sigmoid", f"{node}.gate", [y], f"{node}.gate", shape=(1, c))
        column = b.const(f"{node}.scale_shape", np.array([-1, c, 1, 1]), dtype="<i8")
        y = b.add("Reshape", f"{node}.scale", [y, column], f"{node}.scale", shape=(c, 1, 1))
        return b.add("Mul", node, [x, y], node)
