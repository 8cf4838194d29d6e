"""A union of models picked by a tag, whose members' schemas pydantic builds only for the kinds a
spec uses.

An ordinary discriminated union over every op model of the op table makes pydantic build all
their schemas before the first value is validated, so start-up would grow with the op table. Here
each member gets a validator of its own, built the first time a value of its kind arrives and
kept for the process; errors keep the paths a discriminated union gives (`stem.0.conv.kernel`),
with the member's tag after the item's index.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import (
    PydanticCustomError,
    PydanticKnownError,
    SchemaValidator,
    core_schema,
)

# Members validated inside members (a loop's ops, a loop in a loop): each is a validation of its
# own, which pydantic's depth limit does not see, so the nesting has a limit here.
MAX_NESTING = 64
_nesting = threading.local()


class TaggedChoice:
    """`Annotated[Any, TaggedChoice(...)]`: a value goes to the member its tag names; a value
    with no tag is the error a discriminated union reports (`union_tag_not_found`). `constants`
    are accepted as they are (a marker in a list of members, such as `pre_logits`). In the JSON
    Schema the type is `json_schema`, where `{"$ref": NAME}` refers to the union as
    `#/$defs/NAME`; the caller writes that definition out (see `with_refs`)."""

    def __init__(self, tag_of: Callable[[Any], str | None],
                 members: Mapping[str, type[BaseModel]], discriminator: str,
                 json_schema: dict[str, Any], constants: tuple[str, ...] = ()) -> None:
        self._tag_of = tag_of
        self._members = members  # read at validation time: the caller may complete it later
        self._discriminator = discriminator
        self._json_schema = json_schema
        self._constants = constants
        self._validators: dict[str, SchemaValidator] = {}

    def accepting(self, *constants: str, json_schema: dict[str, Any]) -> TaggedChoice:
        """The same union also taking `constants`; its members' validators are shared."""
        choice = TaggedChoice(self._tag_of, self._members, self._discriminator, json_schema,
                              constants)
        choice._validators = self._validators
        return choice

    def validate(self, value: Any) -> Any:
        if isinstance(value, str) and self._constants:  # a marker or a misspelt one
            if value in self._constants:
                return value
            raise PydanticKnownError("literal_error", {
                "expected": " or ".join(repr(c) for c in self._constants)})
        tag = self._tag_of(value)
        if tag is None:
            raise PydanticKnownError("union_tag_not_found", {"discriminator": self._discriminator})
        validator = self._validators.get(tag)
        if validator is None:
            validator = self._validators[tag] = self._validator(tag)
        depth = getattr(_nesting, "depth", 0)
        if depth >= MAX_NESTING:
            raise PydanticCustomError("nesting_too_deep", "ops nest more than {limit} deep",
                                      {"limit": MAX_NESTING})
        _nesting.depth = depth + 1
        try:
            return validator.validate_python(value)
        finally:
            _nesting.depth = depth

    def _validator(self, tag: str) -> SchemaValidator:
        """One member's validator: a tagged union of that member alone, so that its errors carry
        the tag in their path as the whole union's would."""
        model = self._members[tag]
        model.model_rebuild()  # a deferred model's schema, built now (once)
        return SchemaValidator(core_schema.tagged_union_schema(
            {tag: model.__pydantic_core_schema__}, discriminator=lambda _value: tag))

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> dict[str, Any]:
        # pydantic checks every $ref against the definitions it knows; this one is a definition
        # it will never see, so it travels under a key of its own until `with_refs`
        return _mark_refs(self._json_schema)


_REF = "x-tagged-choice-ref"


def _mark_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {(_REF if k == "$ref" else k): _mark_refs(v) for k, v in value.items()}
    return [_mark_refs(v) for v in value] if isinstance(value, list) else value


def with_refs(value: Any) -> Any:
    """A JSON Schema with the references to the unions' definitions made ordinary `$ref`s."""
    if isinstance(value, dict):
        return {("$ref" if k == _REF else k): (f"#/$defs/{v}" if k == _REF else with_refs(v))
                for k, v in value.items()}
    return [with_refs(v) for v in value] if isinstance(value, list) else value
