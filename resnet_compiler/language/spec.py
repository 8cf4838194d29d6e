"""The spec language: pydantic models, validation, and friendly error messages.

A spec names an input, a stem (a list of ops), stages of residual blocks and a head. Blocks and
shortcuts are templates written in the same op language, so the built-in ones (`builtin/*.yaml`)
and a user's own are handled by one mechanism.
"""

import hashlib
import json
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    TypeAdapter,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

from ..ops import SPEC_OPS, OpModel
from ..ops.base import ExprText, PositiveInt, Size, check_module_path
from .expr import FUNCTIONS
from .fixed_params import bind, fixed_params
from .names import (
    MAX_NAME_LENGTH,
    RESERVED_NAMES,
    check_class_name,
    check_identifier,
    check_variable,
)
from .tagged_choice import TaggedChoice, with_refs

__all__ = ["OP_KINDS", "RESERVED_NAMES", "Block", "Check", "Defaults", "Head", "Input", "Library", "Loop",
           "Module", "ModuleCall", "Op", "Spec", "Stage", "json_schema"]



def _variable(value: str) -> str:
    check_variable(value)
    if value in FUNCTIONS:
        raise ValueError(f"{value!r} is a function of the expression language; choose another")
    return value


def _module_variable(value: str) -> str:
    """A module's params and vars: any variable name but `in_channels`, which every module is
    given (a module may take `channels` and `stride` as params of its own)."""
    if value in ("channels", "stride", "out_channels"):
        return value
    return _variable(value)


Identifier = Annotated[str, AfterValidator(check_identifier)]
ModuleVariable = Annotated[str, AfterValidator(_module_variable)]
ModulePath = Annotated[str, AfterValidator(check_module_path)]
Variable = Annotated[str, AfterValidator(_variable)]
ParamValue = Union[StrictBool, StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)]]  # noqa: UP007
# A module's param may also be a word (an act fn, a gate), read by op fields that take no
# expression; such params fix the class (language/fixed_params.py).
ModuleParamValue = Union[ParamValue, Identifier]  # noqa: UP007


REQUIRED = "required_here"  # error type of a key that the spec's other keys make required


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class AntiAlias(OpModel):
    """Where a block's anti-aliasing goes: the layer `defaults.aa` (or the stage's `aa`) names,
    with this stride; left out when none is set."""

    op: Literal["anti_alias"]
    stride: Size = 2


class ShortcutSlot(OpModel):
    """Where a block's shortcut goes: the shortcut the stage, `defaults.shortcut` or the block's
    `shortcut:` names (conv_bn unless set; `none` leaves it out), applied to this op's input and
    named `downsample` unless named otherwise. It is used when the block's shape changes
    (stride != 1 or in_channels != out_channels) unless `when:` says otherwise; where it is not
    used, its value is its input."""

    op: Literal["shortcut"]


class ModuleCall(OpModel):
    """An op whose `op:` names a module (built-in or the spec's `modules:`): the module's ops
    expand under this op's name; the other keys set the module's params (values or expressions
    in the caller's scope), checked against the module once it is known."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, defer_build=True)
    op: Identifier


class Loop(_Model):
    """`repeat` copies of `ops`: each op's name is a list (`convs` -> convs.0, convs.1, ...), the
    index variable (`i`) may appear in expressions and in refs (`spx[i]`, `sp[i - 1]`), and
    `name[*]` after the loop reads every copy's value (a fan-in)."""

    repeat: Size = Field(description="How many copies (a whole number from 1 to 64).")
    index: str = Field("i", description="The index variable, 0 to repeat - 1.")
    ops: Annotated[list["Op"], Field(min_length=1)]

    @model_validator(mode="after")
    def _index_name(self) -> "Loop":
        _variable(self.index)
        if any(isinstance(op, Loop) for op in self.ops):
            raise ValueError("loops do not nest; make the inner loop a module's ops and call the"
                             " module in the outer loop")
        return self


# Every op a spec may write, from the op table (plus the anti-aliasing slot): `op:` picks the model;
# another name is a module call, and a mapping with `repeat:` a loop.
_OP_MODELS: dict[str, type[BaseModel]] = {k: op.model for k, op in SPEC_OPS.items()}
_OP_MODELS["anti_alias"] = AntiAlias
_OP_MODELS["shortcut"] = ShortcutSlot
OP_KINDS = tuple(_OP_MODELS)
MODULE_TAG, LOOP_TAG = "module call", "repeat"


def _op_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return LOOP_TAG if isinstance(value, Loop) else (
            MODULE_TAG if isinstance(value, ModuleCall) else value.op)
    if not isinstance(value, dict):
        return None
    if "repeat" in value and "op" not in value:
        return LOOP_TAG
    kind = value.get("op")
    if not isinstance(kind, str):
        return None
    return kind if kind in _OP_MODELS else MODULE_TAG


# The members of the op union, by tag; pydantic builds a member's schema the first time a spec
# uses its kind (language/tagged_choice.py), so start-up does not grow with the op table.
_OP_MEMBERS: dict[str, type[BaseModel]] = {**_OP_MODELS, MODULE_TAG: ModuleCall, LOOP_TAG: Loop}
_OP_CHOICE = TaggedChoice(_op_tag, _OP_MEMBERS, "_op_tag()", {"$ref": "Op"})
Op = Annotated[Any, _OP_CHOICE]
# A layer choice: an op kind (`gn`), an activation function (`silu`), or an op mapping without
# name and when (`{op: gn, groups: 16}`).
LayerChoice = Union[Identifier, dict[Identifier, Any]]  # noqa: UP007


class Input(_Model):
    """The image the network takes, and how a picture becomes that image: scale to [0, 1],
    resize to height x width (`resize`), then `(x - mean) / std` per channel when given."""

    channels: PositiveInt
    height: PositiveInt
    width: PositiveInt
    mean: list[Annotated[StrictFloat | StrictInt, Field(allow_inf_nan=False)]] | None = Field(
        None, description="Per-channel mean subtracted after scaling to [0, 1].")
    std: list[Annotated[StrictFloat | StrictInt, Field(gt=0, allow_inf_nan=False)]] | None = Field(
        None, description="Per-channel divisor applied after the mean.")
    resize: Literal["bilinear", "nearest", "bicubic"] = Field(
        "bilinear", description="How images of another size are resized to height x width.")

    @model_validator(mode="after")
    def _per_channel(self) -> "Input":
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) != self.channels:
                raise ValueError(f"{key} has {len(values)} values; the input has "
                                 f"{self.channels} channel{'s' if self.channels != 1 else ''}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        return self


class Block(_Model):
    """A block template, in one of two forms. `branch:` (with `shortcut`, `post`): the residual
    is implied, a projection shortcut when the shape changes, the add, then `post`. `ops:`: the
    block is its ops and nothing else; the shortcut and the residual add, if any, are ordinary
    ops (a conv named `downsample` with a `when:`, an `add` of any two values), so a block may
    add an inner value, skip the residual, or have none. Either is a chain of ops, or a small
    graph when ops name the values they read (`input:`)."""

    class_name: Annotated[str, AfterValidator(check_class_name)] | None = Field(
        None, description="Class name in the generated code.")
    params: dict[Variable, ParamValue] = Field(
        default_factory=dict, description="Parameters with defaults; stages may override them.")
    vars: dict[Variable, ExprText] = Field(
        default_factory=dict, description="Derived values, computed in order.")
    out_channels: Size = "channels"
    branch: Annotated[list[Op], Field(min_length=1)] | None = None
    ops: Annotated[list[Op], Field(min_length=1)] | None = Field(
        None, description="The whole block, residual included as ordinary ops (instead of"
        " branch, shortcut and post).")
    last_norm: ModulePath | None = Field(
        None, description="The norm that defaults.zero_init_last_bn starts at zero (the last"
        " unconditional norm of the branch when left out; none for an `ops:` block without it).")
    shortcut: Identifier = Field("conv_bn", description="The shortcut used when the shape"
                                 " changes (with ops: the one a `{op: shortcut}` slot takes).")
    projection_from: ModulePath | None = Field(
        None, description="Branch op whose output feeds the projection (pre-activation nets).")
    post: list[Op] = Field(default_factory=list, description="Ops after the add.")
    output: ModulePath | None = Field(
        None, description="The branch value that meets the shortcut (the last branch op's when"
        " left out); with `ops:`, the value the block returns.")

    @model_validator(mode="after")
    def _one_form(self) -> "Block":
        if (self.branch is None) == (self.ops is None):
            raise ValueError("a block has either branch: (the residual implied) or ops: (the"
                             " residual written out), not both")
        if self.ops is not None:
            extra = [k for k in ("post", "projection_from") if k in self.model_fields_set]
            if extra:
                raise ValueError(f"{extra[0]!r} belongs to a branch: block; with ops: the"
                                 " shortcut and the add are ops of their own")
        return self


def _docstring_text(value: str) -> str:
    """Text that becomes a docstring of the generated code as it is: plain printable words,
    nothing that could end the string or escape from it."""
    if not value.isprintable() or "\\" in value or '"' in value:
        raise ValueError("a doc is plain text on one line, without backslashes or double quotes")
    return value


class Check(_Model):
    """A condition a module's params must not meet: `error` is said at the call when `when` is
    true (two params that set the same thing, a value out of range)."""

    when: ExprText
    error: Annotated[str, Field(min_length=1, max_length=200)]


class Module(_Model):
    """A composite layer in the op language: params, vars, ops wired with `input:` (`x` is the
    module's input) and an output; nothing implied, no residual. `op: NAME` instantiates it."""

    class_name: Annotated[str, AfterValidator(check_class_name)] | None = Field(
        None, description="Class name in the generated code.")
    doc: Annotated[str, Field(min_length=1, max_length=400), AfterValidator(_docstring_text)
                   ] | None = Field(
        None, description="What the module computes: the generated class's docstring.")
    params: dict[ModuleVariable, ModuleParamValue] = Field(
        default_factory=dict, description="Parameters with defaults; a call sets them by key. A"
        " param named in a field that takes no expression (`fn: act`, `bias: bias`), or whose"
        " value is a word, is fixed per class: each set of its values is a class of its own.")
    checks: list[Check] = Field(
        default_factory=list, description="Conditions on the params that are errors at a call.")
    vars: dict[ModuleVariable, ExprText] = Field(
        default_factory=dict, description="Derived values, computed in order.")
    ops: Annotated[list[Op], Field(min_length=1)]
    output: ModulePath | None = Field(None, description="The value the module returns (the last"
                                      " op's when left out).")
    # the ops as written and the params that fix the class (see _bind_fixed_params)
    _raw_ops: list[Any] = PrivateAttr(default_factory=list)
    _fixed: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @model_validator(mode="wrap")
    @classmethod
    def _bind_fixed_params(cls, data: Any, handler: Any) -> "Module":
        """Validate the ops with the fixed params' defaults in the fields that name them, and
        keep the ops as written so that a call with other values can bind them again."""
        if not (isinstance(data, dict) and isinstance(data.get("ops"), list)
                and isinstance(data.get("params", {}), dict)):
            return handler(data)
        params = data.get("params", {})
        fixed = fixed_params(data["ops"], params)
        if not fixed:
            return handler(data)
        module = handler({**data, "ops": bind(data["ops"], params, fixed)})
        module._raw_ops = data["ops"]
        module._fixed = frozenset(fixed)
        return module

    @property
    def fixed(self) -> frozenset[str]:
        """The params that fix the class."""
        return self._fixed

    def bound_ops(self, values: dict[str, Any]) -> list[Any]:
        """The ops with the fixed params set to `values` (those not given keep the defaults)."""
        return bind(self._raw_ops, {**self.params, **values}, set(self._fixed))


_OP_LIST: TypeAdapter[list[Any]] | None = None


def validate_ops(raw: list[Any]) -> list[Any]:
    """A list of ops validated on its own (a module's ops bound again); pydantic builds the
    list's schema on first use only."""
    global _OP_LIST
    if _OP_LIST is None:
        _OP_LIST = TypeAdapter(list[Op])
    return _OP_LIST.validate_python(raw)


class Stage(BaseModel):
    """`depth` blocks; the first has `stride`. Extra keys set the block's params; `channels` and
    a param may be a list with one value per block."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, defer_build=True)
    block: Identifier
    depth: PositiveInt
    channels: PositiveInt | Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        description="The blocks' width, or one width per block (timm's pruned models).")
    stride: PositiveInt = 1
    name: ModulePath | None = Field(None, description="Module path of the stage's blocks: layer1,"
                                    " layer2, ... by default; timm's ResNetV2 names stages.0.blocks.")
    block_names: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*\{[in]\}[A-Za-z0-9_-]*$")] | None = \
        Field(None, description="How the stage names its blocks: a pattern with {n} (counting from"
              " 1) or {i} (from 0), e.g. b{n} for timm's RegNet (s1.b1, s1.b2), block1-{i} for"
              " torchvision's (block1-0); 0, 1, ... by default.")
    shortcut: Identifier | None = None
    dilation: PositiveInt | None = Field(None, description="Dilation of the stage's blocks (the "
                                         "first block keeps the previous stage's, as torchvision"
                                         " and timm do).")
    norm: LayerChoice | None = Field(None, description="This stage's norm (see defaults.norm).")
    act: LayerChoice | None = Field(None, description="This stage's activation.")
    aa: LayerChoice | None = Field(None, description="This stage's anti-aliasing layer.")
    attn: LayerChoice | None = Field(None, description="This stage's attention (see defaults.attn).")

    @model_validator(mode="after")
    def _one_width_per_block(self) -> "Stage":
        if isinstance(self.channels, list) and len(self.channels) != self.depth:
            raise ValueError(f"channels gives {len(self.channels)} widths for {self.depth}"
                             " blocks; give one per block (or a single width)")
        return self


class Defaults(BaseModel):
    """Spec-wide settings; extra keys set block params for every stage."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True, defer_build=True)
    conv_bias: StrictBool = False
    zero_init_last_bn: StrictBool = False
    shortcut: Identifier | None = None
    norm: LayerChoice | None = Field(None, description="Replaces every bn op: gn, frozen_bn, or"
                                     " an op mapping like {op: gn, groups: 16} (timm's norm_layer).")
    act: LayerChoice | None = Field(None, description="Replaces every relu op: an activation fn"
                                    " (silu, gelu, ...) or {op: act, ...} (timm's act_layer).")
    conv: LayerChoice | None = Field(None, description="Replaces every conv op, e.g. std_conv.")
    aa: LayerChoice | None = Field(None, description="Anti-aliasing in strided blocks: avg (timm's"
                                   " resnetaa), blur (resnetblur), or an op mapping.")
    attn: LayerChoice | None = Field(None, description="Replaces every se op: eca, or an op mapping"
                                     " like {op: se, ratio: 0.25} (timm's attn_layer).")
    drop_path_rate: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = Field(
        0.0, description="Stochastic depth: block i of n drops its branch with rate * i / (n - 1).")


class Head(_Model):
    pre: list[Op] = Field(default_factory=list, description="Ops before pooling.")
    pool: Literal["avg", "max"] = "avg"
    dropout: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0
    fc: Identifier = "fc"
    classifier: Literal["linear", "conv"] = Field(
        "linear", description="linear: flatten then nn.Linear; conv: a 1x1 conv on the pooled map,"
        " then flatten (timm's ResNetV2 head).")
    path: Identifier | None = Field(None, description="Gather pool, dropout, classifier and flatten"
                                    " under this module (timm's `head`: head.global_pool,"
                                    " head.drop, head.fc, head.flatten).")


PRE_LOGITS = "pre_logits"  # in a head list: where forward_head(pre_logits=True) stops
HeadItem = Annotated[Any, _OP_CHOICE.accepting(
    PRE_LOGITS, json_schema={"anyOf": [{"$ref": "Op"}, {"const": PRE_LOGITS, "type": "string"}]})]


def _head_or_none(value: Any) -> Any:
    if not isinstance(value, (dict, Head, list)) and value != "none":
        raise ValueError(f"head is a mapping like {{pool: avg}}, a list of ops, or none; got"
                         f" {value!r}")
    if isinstance(value, list) and value.count(PRE_LOGITS) > 1:
        raise ValueError("a head list marks pre_logits once")
    return value


def _head_tag(value: Any) -> str:
    if value == "none":
        return "literal['none']"
    return "list" if isinstance(value, list) else "Head"


HeadChoice = Annotated[
    Union[Annotated[Head, Tag("Head")], Annotated[Literal["none"], Tag("literal['none']")],  # noqa: UP007
          Annotated[Annotated[list[HeadItem], Field(min_length=1)], Tag("list")]],
    Discriminator(_head_tag),
    BeforeValidator(_head_or_none)]


class Library(_Model):
    """Named block and shortcut templates (the built-ins, or a spec's own)."""

    blocks: dict[Identifier, Block] = Field(default_factory=dict)
    modules: dict[Identifier, Module] = Field(default_factory=dict)
    shortcuts: dict[Identifier, Annotated[list[Op], Field(min_length=1)]] = Field(
        default_factory=dict)


class Spec(Library):
    """A whole network."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]*$", max_length=MAX_NAME_LENGTH)]
    input: Input
    num_classes: PositiveInt | None = Field(
        None, description="Classes of the classifier; required unless head is none (then ignored).")
    defaults: Defaults = Field(default_factory=Defaults.model_construct)
    stem: list[Op] = Field(default_factory=list)
    stages: Annotated[list[Stage], Field(min_length=1)]
    head: HeadChoice = Field(
        default_factory=Head.model_construct,
        description="Pooling and classifier ({pool: avg}); a list of ops like the stem (a final"
        " conv, norm, global_pool, flatten, dropout, linear; `pre_logits` marks where"
        " forward_head(pre_logits=True) stops); or none: the network ends at its last feature"
        " map.")
    outputs: Annotated[list[ModulePath], Field(min_length=1, max_length=64)] | None = Field(
        None, description="Feature maps the model returns, in order: stage names (layer1), block ids"
        " (layer2.1), or stem and head.pre op names; the logits follow when a head remains.")
    output_stride: Literal[8, 16, 32] | None = Field(
        None, description="Replace the last stages' strides by dilation (timm's output_stride).")
    peer: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="The model this spec builds, as `timm:resnet50d` or "
        "`torchvision:resnet50`; it describes this file only (a spec that extends it does not "
        "inherit it) and is not part of the network or its hash.")

    @model_validator(mode="after")
    def _classifier_or_features(self) -> "Spec":
        if self.head == "none" and not self.outputs:
            raise ValueError("head: none leaves nothing to return; list the feature maps under"
                             " outputs: (for example [layer1, layer2, layer3, layer4])")
        if self.head != "none" and self.num_classes is None:
            raise PydanticCustomError(REQUIRED, "missing required key 'num_classes' (only a spec"
                                      " with head: none goes without)", {"key": "num_classes"})
        return self

    def normalised(self) -> dict[str, Any]:
        """The spec as plain data, settings left at their defaults left out (so new settings do
        not change old specs' hashes), keys in the order written."""
        return self.model_dump(mode="json", exclude_defaults=True, exclude={"peer"})

    @staticmethod
    def sha256_of(normalised: dict[str, Any]) -> str:
        """The hash of normalised data: of its compact JSON with sorted keys."""
        text = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def sha256(self) -> str:
        """Hash of the normalised spec: the same network gives the same hash."""
        return self.sha256_of(self.normalised())


def json_schema() -> dict[str, Any]:
    schema = with_refs(Spec.model_json_schema())
    # the op union, which the models refer to as #/$defs/Op: every member written out
    members = tuple(Annotated[m, Tag(k)] for k, m in _OP_MEMBERS.items())
    ops = TypeAdapter(TypeAliasType("Op", Annotated[Union[members], Discriminator(_op_tag)])  # noqa: UP007
                      ).json_schema()
    ops = with_refs(ops)
    schema["$defs"] = dict(sorted({**schema["$defs"], **ops["$defs"]}.items()))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "resnet-spec.schema.json"
    schema["title"] = "resnet-compiler spec"
    # resolved before validation (language/compose.py), so not fields of the model
    schema["properties"]["extends"] = {
        "type": "string", "description": "A spec this one builds on: a file path (relative to "
        "this spec) or a preset name. Mappings merge, scalars and lists replace, a mapping in "
        "place of a list patches its items by index or name; `_replace_: true` replaces."}
    schema["properties"]["use"] = {
        "type": "array", "items": {"type": "string"}, "description": "Libraries of blocks:, "
        "modules: and shortcuts: (files relative to this spec, or built-in library names)."}
    return schema
