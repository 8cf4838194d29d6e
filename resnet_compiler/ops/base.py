"""What an op is: one class that knows everything about one op kind.

The spec model (attributes, defaults, validation), the shape rule, the state_dict tensors, the
parameter, MAC and activation counts, the initialisation, and the lowerings to PyTorch source and
to ONNX nodes live side by side in one `OpDef` subclass, so adding an op touches one module.
Emitters, complexity, weights and verify only ever call these methods through the registry.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt
from typing_extensions import TypeAliasType

from ..language.expr import Expr, ExprError
from ..language.names import check_identifier
from ..messages import format_shape

if TYPE_CHECKING:
    import numpy as np

# The ONNX lowerings receive emit/onnx_builder.py's OnnxBuilder (ops do not import it: the
# emitter depends on the op table, not the other way round).
OnnxBuilder = Any

Shape = tuple[int, ...]
Attrs = Mapping[str, Any]
# A channel count in a channel rule: an int when the graph is built, a source-text term when the
# PyTorch emitter writes a constructor's arguments (emit/channel_text.py's Channels).
Count = Any


class ShapeError(ValueError):
    """An op that cannot be applied to its input shape."""


# ---- spec-model building blocks shared by the ops ----------------------------------------------

def _expression(value: str) -> str:
    try:
        return Expr.parse(value).source
    except ExprError as e:
        raise ValueError(str(e)) from None


def check_module_path(value: str) -> str:
    """A module name, or a dotted path whose parts are names or indices (`conv1.0`, `stem.conv`,
    `stages.0.blocks`): consecutive modules under one path become an nn.Sequential, as timm and
    torchvision nest them."""
    first, *rest = value.split(".")
    check_identifier(first)
    for part in rest:
        if part.isdigit():
            if len(part) > 4 or str(int(part)) != part:
                raise ValueError(f"{value!r}: an index in a module path is a plain number like 0")
        else:
            try:
                check_identifier(part)
            except ValueError as e:
                if "reserved" in str(e):
                    raise ValueError(f"{value!r}: its part {part!r} is reserved; choose another"
                                     " name") from None
                raise ValueError(f"{value!r}: each part of a dotted module path is a name or an"
                                 " index, like 'conv1.0' or 'stem.conv'") from None
    return value


def check_value_ref(value: str) -> str:
    """A value in a block or module: an op's name, `x` (the input), part i of a split or copy i
    of a loop's value, `name[i]` (i a number or an expression such as `i - 1`), or every part or
    copy, `name[*]`."""
    name, bracket, index = value.partition("[")
    if name != "x":  # the block's input
        check_module_path(name)
    if bracket:
        inner = index[:-1].strip() if index.endswith("]") else ""
        ok = inner == "*" or (inner.isdigit() and len(inner) <= 4)
        if not ok and inner:
            try:
                Expr.parse(inner)
                ok = True
            except ExprError:
                ok = False
        if not ok:
            raise ValueError(f"{value!r}: a part of a split (or a copy in a loop) is written"
                             " name[index], like spx[0] or sp[i - 1], or name[*] for all of them")
    return value


ExprText = Annotated[str, AfterValidator(_expression)]
ValueRef = Annotated[str, AfterValidator(check_value_ref)]
OpName = Annotated[str, AfterValidator(check_module_path)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
# Named aliases: pydantic builds each one's schema once for all the fields that use it.
Size = TypeAliasType("Size", Union[PositiveInt, ExprText])  # noqa: UP007
Offset = TypeAliasType("Offset", Union[NonNegativeInt, ExprText])  # noqa: UP007


class OpModel(BaseModel):
    """Fields every op in a spec has."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)
    name: OpName | None = Field(None, description="Module name in the generated code; in the stem"
                                " and head, 'group.index' gathers consecutive ops into nn.Sequential.")
    when: ExprText | None = Field(None, description="Include the op only if this is true"
                                  " (when false, the op's value is its first input).")
    input: ValueRef | Annotated[list[ValueRef], Field(min_length=1)] | None = Field(
        None, description="In a block: the value(s) the op reads, by name (`x` is the block's"
        " input, `spx[1]` part 1 of split `spx`); the previous op's value when left out.")


def op_fields(op: BaseModel, exclude: tuple[str, ...]) -> dict[str, Any]:
    """The op's attributes that are set (not None), extra keys of a module call included, read
    directly: dumping through pydantic would build each op model's serializer on first use."""
    out = {}
    for k, field in type(op).model_fields.items():
        value = getattr(op, k)
        skip = getattr(field, "exclude_if", None)  # an option left at its default (se's act)
        if k not in exclude and not (skip is not None and skip(value)):
            out[k] = value
    out.update(op.model_extra or {})
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in out.items()
            if v is not None}


@dataclass(frozen=True)
class Context:
    """Spec-wide settings an op's defaults may depend on."""

    conv_bias: bool = False


# ---- helpers the ops share ---------------------------------------------------------------------

def spatial_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                 ceil_mode: bool = False) -> int:
    """PyTorch's (and ONNX's) output length of a sliding window, ceil_mode included."""
    numerator = size + 2 * padding - (dilation * (kernel - 1) + 1)
    # floor division, also for a negative numerator: with ceil_mode a window wider than a small
    # input still yields one output, and the last window must start inside the input
    if not ceil_mode:
        return max(numerator // stride + 1, 0)
    out = (numerator + stride - 1) // stride + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return max(out, 0)


def window_shape(attrs: Attrs, shape: Shape, channels: int, pool: bool) -> Shape:
    """The output of a 2-D sliding window (conv or pool) on a feature map."""
    if len(shape) != 3:
        raise ShapeError(f"needs a feature map, got {format_shape(shape)}")
    _, h, w = shape
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    d = attrs.get("dilation", 1)
    if pool and p > k // 2:
        raise ShapeError(f"padding {p} is more than half the kernel {k}")
    ceil = attrs.get("ceil_mode", False)
    oh, ow = spatial_size(h, k, s, p, d, ceil), spatial_size(w, k, s, p, d, ceil)
    if oh < 1 or ow < 1:
        raise ShapeError(f"the {h}x{w} feature map shrinks below 1x1 (kernel {k}, stride {s},"
                         f" padding {p}); use a larger input or fewer strided layers")
    return (channels, oh, ow)


def expect_channels(kind: str, expected: int, shape: Shape) -> None:
    if shape[0] != expected:
        raise ShapeError(f"{kind} expects {expected} channels, got {shape[0]}")


def fold_constants(text: str) -> str:
    """A constant expression becomes its value's text ("(3 - 1) // 2" -> "1")."""
    e = Expr.parse(text)
    if not e.constant:
        return e.source
    try:
        return str(e.evaluate({}))
    except ExprError:
        return e.source  # left as written: the expander reports it at the field


def kaiming_fan_out(rng: "np.random.Generator", shape: Shape) -> "np.ndarray":
    """nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")."""
    import numpy as np
    std = math.sqrt(2.0 / (shape[0] * math.prod(shape[2:])))
    return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)


def uniform_fan_in(rng: "np.random.Generator", shape: Shape, fan_in: int) -> "np.ndarray":
    """PyTorch's default bias (and Linear) initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    import numpy as np
    bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
    return rng.uniform(-bound, bound, shape).astype(np.float32)


@dataclass(frozen=True)
class InitOptions:
    """How `OpDef.init` fills tensors: `realistic_norm` gives norms non-trivial statistics (for
    comparisons in eval mode); `zero_gamma` starts a residual branch's last norm at zero."""

    realistic_norm: bool = False
    zero_gamma: bool = False


# ---- the op definition -------------------------------------------------------------------------

class OpDef:
    """One op kind. Subclasses set the class attributes and override what differs."""

    kind: ClassVar[str]
    model: ClassVar[type[OpModel] | None] = None  # None: made by the compiler, not written in specs
    sizes: ClassVar[Mapping[str, int]] = {}  # whole-number expression fields and their minimum
    size_lists: ClassVar[Mapping[str, int]] = {}  # lists of whole-number expressions: minimum
    reals: ClassVar[Mapping[str, tuple[float, float]]] = {}  # number expression fields: [lo, hi)
    role: ClassVar[str] = ""  # "norm" (zero-init of a branch's last norm), "conv", "act", ...
    buffers: ClassVar[frozenset[str]] = frozenset()  # tensors that are not parameters
    torch_helpers: ClassVar[tuple[str, ...]] = ()  # helper classes the generated code needs
    torch_init: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()  # (module type, lines)
    inplace_ok: ClassVar[bool] = False  # the torch module takes `inplace=True`
    onnx_passthrough: ClassVar[bool] = False  # at inference the op is its input (no ONNX node)
    functional: ClassVar[bool] = False  # no module: a torch expression on named values
    has_parts: ClassVar[bool] = False  # its value is several parts, read as NAME[i] (views)
    # in a head, the last op that can classify is the classifier: forward_head(pre_logits=True)
    # returns what it reads
    classifier: ClassVar[bool] = False
    graph_input: ClassVar[bool] = False  # the network's input (the ONNX graph input's value)

    # -- spec side --------------------------------------------------------------------------------
    def sources(self, op: OpModel, ctx: Context) -> dict[str, Any]:
        """The op's attributes with defaults filled in: size fields as expression text (folded
        when constant), flags and floats as values. Evaluated per instance, printed into code."""
        raw = op_fields(op, ("op", "name", "when", "input"))
        out = {k: (fold_constants(str(v)) if k in self.sizes or k in self.reals else v)
               for k, v in raw.items()}
        for k in self.size_lists:
            if k in out:
                out[k] = [fold_constants(str(v)) for v in out[k]]
        return out

    def expression_fields(self) -> frozenset[str]:
        return frozenset(self.sizes) | frozenset(self.reals)

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        """Graph node attributes from evaluated `values` and the input shapes."""
        return dict(values)

    def is_identity(self, attrs: Attrs) -> bool:
        """True when the op computes nothing (it is then left out of the graph and the code)."""
        return False

    def identity_condition(self, src: Mapping[str, str]) -> str | None:
        """Python condition over the sources under which the op is a no-op (for templates)."""
        return None

    # -- the channel rule -------------------------------------------------------------------------
    def channels(self, fields: Mapping[str, Any], inputs: Sequence[Count]) -> Count:
        """The output's channels from the op's fields (by their spec names) and each input's
        channels: the op's one channel rule. Written as plain arithmetic (`+`, `*`, `//`, `sum`,
        a comparison with a number), it runs on ints when the graph is built (in `shape`, or in
        `resolve` where the node's attributes rename the fields) and on source-text terms when
        the PyTorch emitter writes a constructor's channel arguments (`width * 2`). Checks that
        can fail belong in `resolve` and `shape`. By default, the first input's."""
        return inputs[0]

    def part_channels(self, fields: Mapping[str, Any], channels: Count, part: int) -> Count:
        """Part `part`'s channels from the whole value's (ops with `has_parts`); a channel rule
        as `channels` is."""
        raise NotImplementedError(f"{self.kind} has no parts")

    # -- analysis ---------------------------------------------------------------------------------
    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        return (self.channels(attrs, [x[0]]), *x[1:])

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        """State_dict entries (names relative to the node) and their shapes."""
        return {}

    def params(self, attrs: Attrs, tensors: Mapping[str, Shape]) -> int:
        return sum(math.prod(s) for name, s in tensors.items()
                   if name.rsplit(".", 1)[-1] not in self.buffers)

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        """Multiply-accumulates per image (convolutions and matrix products; elementwise ops
        count zero, the convention behind torchvision's published figures)."""
        return 0

    def acts(self, attrs: Attrs, out: Shape) -> int:
        """Elements the op writes per image (pycls's activations)."""
        return math.prod(out)

    def pycls_counts(self, attrs: Attrs, macs: int) -> tuple[int, int]:
        """(flops, acts) as pycls's complexity functions count them: flops are multiply-adds
        plus bias additions, acts the outputs of convs, spatial pools and linear layers only;
        other ops (norms, activations, adds, global pooling) count neither."""
        return macs, 0

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: "np.random.Generator",
             options: InitOptions) -> "dict[str, np.ndarray]":
        """Seeded values for `tensors`, as the generated code's `_init_weights` would draw them."""
        if tensors:
            raise NotImplementedError(f"{self.kind}: no initialisation")
        return {}

    # -- PyTorch ----------------------------------------------------------------------------------
    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str | None:
        """The constructor expression, with sizes as source text; None for ops without a module."""
        raise NotImplementedError

    def stem_anti_alias(self, op: Mapping[str, Any], aa: str) -> list[dict[str, Any]] | None:
        """What this op (raw spec data) becomes in a stem with `defaults.aa` (timm's aa_layer
        reaches the stem's strided max pool); None: it stays as it is."""
        return None

    def label(self, exprs: Mapping[str, Expr]) -> str:
        """The op in a generated block's docstring (`conv3x3-bn-relu`), given its size fields
        as expressions."""
        return self.kind

    def torch_helpers_for(self, sources: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
        """The helpers for this op's uses in one network (their sources); most ops need the
        same ones whatever their attributes."""
        return self.torch_helpers

    def torch_call(self, module: str, inputs: Sequence[str]) -> str:
        """The forward expression applying the op to its inputs."""
        return f"{module}({inputs[0]})"

    def part_shape(self, attrs: Attrs, shape: Shape, part: int) -> Shape:
        """The shape of part `part` of the value (ops with `has_parts`): the channels of its
        rule, the whole's height and width."""
        return (self.part_channels(attrs, shape[0], part), *shape[1:])

    def part_shapes(self, attrs: Attrs, shape: Shape) -> list[Shape]:
        """Every part's shape (ops with `has_parts`)."""
        raise NotImplementedError(f"{self.kind} has no parts")

    def torch_expr(self, module: str, inputs: Sequence[str], src: Mapping[str, Any]) -> str:
        """The forward expression, for ops whose call depends on their attributes (functional
        ops without a module); by default the module call."""
        return self.torch_call(module, inputs)

    # -- ONNX -------------------------------------------------------------------------------------
    def onnx(self, b: OnnxBuilder, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """Append the op's ONNX nodes; return the name of the value that holds its output."""
        raise NotImplementedError

    # -- optional: a norm that can fold into the convolution before it -------------------------
    folds_into_conv: ClassVar[bool] = False

    def fold_into_conv(self, b: OnnxBuilder, node: str, attrs: Attrs, weight: "np.ndarray",
                       bias: "np.ndarray | None") -> "tuple[np.ndarray, np.ndarray]":
        """The conv's weight and bias with this op folded in (only if `folds_into_conv`)."""
        raise NotImplementedError


def text(value: Any) -> str:
    """A source value as code: expression text stays, numbers and flags print as Python."""
    return value if isinstance(value, str) else repr(value)
