"""Activations: ReLU (`relu`, kept as its own op) and the general `act` op, one elementwise
function chosen by `fn`, lowered to the matching `nn` module and to the ONNX nodes the target
opset has (fused ops like Gelu, HardSwish and Mish only where the opset defines them)."""

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from .base import Attrs, Context, OpDef, OpModel

if TYPE_CHECKING:
    pass


class ReLU(OpModel):
    op: Literal["relu"]


class ReLUOp(OpDef):
    kind = "relu"
    model = ReLU
    role = "act"
    inplace_ok = True

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return "nn.ReLU(inplace=True)" if inplace else "nn.ReLU()"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("Relu", node, list(inputs), node)


# ---- the general activation ---------------------------------------------------------------------

ActFn = Literal["relu", "relu6", "leaky_relu", "elu", "silu", "gelu", "gelu_tanh", "hardswish",
                "hardsigmoid", "sigmoid", "tanh", "mish", "identity"]
Finite = Annotated[float, Field(allow_inf_nan=False)]

# fn -> (nn module, whether it takes `inplace`); GELU, Sigmoid and Tanh have no in-place form
TORCH_MODULES: dict[str, tuple[str, bool]] = {
    "relu": ("nn.ReLU", True), "relu6": ("nn.ReLU6", True), "leaky_relu": ("nn.LeakyReLU", True),
    "elu": ("nn.ELU", True), "silu": ("nn.SiLU", True), "gelu": ("nn.GELU", False),
    "gelu_tanh": ("nn.GELU", False), "hardswish": ("nn.Hardswish", True),
    "hardsigmoid": ("nn.Hardsigmoid", True), "sigmoid": ("nn.Sigmoid", False),
    "tanh": ("nn.Tanh", False), "mish": ("nn.Mish", True),
    "identity": ("nn.Identity", False),  # for norms that carry their own activation (frn)
}
# fn -> (its one float parameter, the default), as nn.LeakyReLU and nn.ELU name them
PARAMETERS: dict[str, tuple[str, float]] = {"leaky_relu": ("slope", 0.01), "elu": ("alpha", 1.0)}
TORCH_KEYWORDS = {"slope": "negative_slope", "alpha": "alpha"}
# ONNX ops that map one to one, with the opset that introduced the op (0: in every target opset)
ONNX_SINGLE: dict[str, tuple[str, int]] = {
    "relu": ("Relu", 0), "sigmoid": ("Sigmoid", 0), "tanh": ("Tanh", 0), "hardswish": ("HardSwish", 14),
    "mish": ("Mish", 18), "identity": ("Identity", 0),
}


# timm's spellings of two fns (its gate_layer='hard_sigmoid', act_layer='hard_swish')
TIMM_SPELLINGS = {"hard_sigmoid": "hardsigmoid", "hard_swish": "hardswish"}


def _timm_spelling(value: Any) -> Any:
    return TIMM_SPELLINGS.get(value, value) if isinstance(value, str) else value


class Act(OpModel):
    """An elementwise activation. `fn` picks it (default relu); `slope` is leaky_relu's negative
    slope (default 0.01), `alpha` scales elu's negative side (default 1.0). gelu is the exact
    (erf) form, gelu_tanh the tanh approximation."""

    op: Literal["act"]
    fn: Annotated[ActFn, BeforeValidator(_timm_spelling)] = Field(
        "relu", description="The function: relu, relu6, leaky_relu, elu, silu, gelu"
                      " (exact), gelu_tanh, hardswish, hardsigmoid, sigmoid, tanh, mish or identity"
                      " (none: for norms with their own activation, such as frn).")
    slope: Finite | None = Field(None, description="leaky_relu only: the negative slope (default 0.01).")
    alpha: Finite | None = Field(None, description="elu only: the scale of the negative side,"
                                 " which saturates at -alpha (default 1.0).")

    @field_validator("slope", "alpha")
    @classmethod
    def _parameter_belongs_to_fn(cls, value: float | None, info: ValidationInfo) -> float | None:
        """A slope on a silu (say) would be silently ignored; say so instead."""
        owner = {"slope": "leaky_relu", "alpha": "elu"}[str(info.field_name)]
        fn = info.data.get("fn")
        if value is not None and fn is not None and fn != owner:
            raise ValueError(f"{info.field_name} {value!r} applies only to fn: {owner}, not {fn}")
        return value


class ActOp(OpDef):
    kind = "act"
    model = Act
    role = "act"
    inplace_ok = True  # per fn: torch_module leaves `inplace` off where the module lacks it

    def sources(self, op: Any, ctx: Context) -> dict[str, Any]:
        """`fn` plus its parameter (filled with its default), so attributes are complete."""
        out: dict[str, Any] = {"fn": op.fn}
        if op.fn in PARAMETERS:
            field, default = PARAMETERS[op.fn]
            value = getattr(op, field)
            out[field] = float(default if value is None else value)
        return out

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        fn = src["fn"]
        cls, has_inplace = TORCH_MODULES[fn]
        args = []
        if fn == "gelu_tanh":
            args.append('approximate="tanh"')
        if fn in PARAMETERS:
            field, default = PARAMETERS[fn]
            value = float(src[field])
            if value != default:
                args.append(f"{TORCH_KEYWORDS[field]}={value!r}")
            # in-place backward of a negative slope or alpha is refused by autograd
            has_inplace = has_inplace and value >= 0
        if inplace and has_inplace:
            args.append("inplace=True")
        return f"{cls}({', '.join(args)})"

    # -- ONNX -------------------------------------------------------------------------------------
    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        fn, x = attrs["fn"], inputs[0]
        shape = b.g.nodes[node]["shape"] if node in b.g else None
        single = ONNX_SINGLE.get(fn)
        if single and b.opset >= single[1]:
            return b.add(single[0], node, [x], node)
        if fn == "leaky_relu":
            return b.add("LeakyRelu", node, [x], node, alpha=float(attrs["slope"]))
        if fn == "elu":
            return b.add("Elu", node, [x], node, alpha=float(attrs["alpha"]))
        if fn == "relu6":
            return b.add("Clip", node, [x, self._scalar(b, node, "min", 0.0),
                                        self._scalar(b, node, "max", 6.0)], node)
        if fn == "hardsigmoid":
            return b.add("HardSigmoid", node, [x], node, alpha=1.0 / 6.0, beta=0.5)
        if fn in ("gelu", "gelu_tanh"):
            return self._gelu(b, node, x, shape, approximate=fn == "gelu_tanh")

        # x * gate(x): silu always; hardswish before opset 14; mish before opset 18
        def step(op_type: str, suffix: str, ins: list[str], **kw: Any) -> str:
            return b.add(op_type, f"{node}.{suffix}", ins, f"{node}.{suffix}", shape=shape, **kw)

        if fn == "silu":
            gate = step("Sigmoid", "sigmoid", [x])
        elif fn == "hardswish":
            gate = step("HardSigmoid", "hardsigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
        elif fn == "mish":
            gate = step("Tanh", "tanh", [step("Softplus", "softplus", [x])])
        else:  # pragma: no cover - every fn is handled above
            raise ValueError(f"act: no ONNX lowering for fn {fn!r}")
        return b.add("Mul", node, [x, gate], node)

    @staticmethod
    def _scalar(b: Any, node: str, suffix: str, value: float) -> str:
        """A 0-d float from a Constant node (opset 12+): Clip's bounds must be scalars, and
        `b.const` stores at least one dimension."""
        return b.add("Constant", f"{node}.{suffix}", [], f"{node}.{suffix}", value_float=value)

    @staticmethod
    def _gelu(b: Any, node: str, x: str, shape: tuple[int, ...] | None, approximate: bool) -> str:
        """The Gelu node from opset 20; before it, torch's own formula:
        0.5 x (1 + erf(x / sqrt 2)), or 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
        import numpy as np
        if b.opset >= 20:
            return b.add("Gelu", node, [x], node, approximate="tanh" if approximate else "none")

        def const(suffix: str, value: float) -> str:
            return b.const(f"{node}.{suffix}", np.array(value, np.float32))

        def step(op_type: str, suffix: str, ins: list[str]) -> str:
            return b.add(op_type, f"{node}.{suffix}", ins, f"{node}.{suffix}", shape=shape)

        if approximate:
            cube = step("Mul", "cube", [step("Mul", "square", [x, x]), x])
            inner = step("Add", "inner", [x, step("Mul", "cubic", [cube, const("k", 0.044715)])])
            core = step("Tanh", "tanh", [step("Mul", "scaled", [inner, const("c", math.sqrt(2 / math.pi))])])
        else:
            core = step("Erf", "erf", [step("Mul", "scaled", [x, const("c", math.sqrt(0.5))])])
        one_plus = step("Add", "one_plus", [core, const("one", 1.0)])
        half_x = step("Mul", "half_x", [x, const("half", 0.5)])
        return b.add("Mul", node, [half_x, one_plus], node)
