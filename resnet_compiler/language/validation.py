"""Validation of loaded data against the spec models: every problem one `file:line: path:`
line with a did-you-mean for unknown keys, all of them in one run, sorted by line."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import Problem, SpecError
from ..messages import did_you_mean
from .load import Document
from .spec import _OP_MODELS, LOOP_TAG, MODULE_TAG, OP_KINDS, REQUIRED, Spec


def _known_keys(model: type[BaseModel], data: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at `loc`, for did-you-mean suggestions."""
    node: Any = model
    value = data
    for part in loc[:-1]:
        if isinstance(value, (dict, list)):
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                value = None
        if isinstance(part, str) and part in OP_KINDS:
            node = _OP_MODELS[part]
            continue
        if isinstance(node, type) and part == node.__name__:  # a union member's marker (Head)
            continue
        if node is None or isinstance(part, int):
            continue
        if isinstance(node, type) and issubclass(node, BaseModel) and part in node.model_fields:
            node = _model_of(node.model_fields[part].annotation)
        else:
            node = None
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []




def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside list[...]/dict[..., ...]/Optional[...] annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    meta = getattr(annotation, "__metadata__", None)
    if meta is not None:
        return _model_of(annotation.__origin__)
    return None


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop pydantic's markers for union members ('int', 'function-after[...]', op tags)."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(part, str):
            if part in _TYPE_MARKERS or part.startswith(("function-", "constrained-", "list[")):
                continue
            if (part in OP_KINDS or part in _UNION_TAGS) and i and isinstance(loc[i - 1], int):
                continue  # the tag of a list item's kind, not a key (a loop's `repeat` is one)
        out.append(part)
    return tuple(out)


_TYPE_MARKERS = frozenset({"int", "str", "bool", "float", "[key]", "Head", "literal['none']", "list"})
_UNION_TAGS = frozenset({MODULE_TAG, LOOP_TAG})


def _message(err: dict[str, Any], model: type[BaseModel], doc: Document,
             loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    raw_loc = err["loc"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_keys(model, doc.data, raw_loc)
        hint = did_you_mean(key, known) or (f"; expected one of: {', '.join(known)}" if known else "")
        return f"unknown key {key!r}{hint}"
    if kind == "missing":
        return f"missing required key {str(loc[-1])!r}"
    if kind == REQUIRED:
        return err["msg"]
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", "?")
        return f"unknown op {tag!r} (ops: {', '.join(OP_KINDS)}){did_you_mean(str(tag), OP_KINDS)}"
    if kind == "union_tag_not_found":
        return f"each op needs an 'op' key ({', '.join(OP_KINDS)})"
    value = err.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    msg = err["msg"]
    if kind in ("int_type", "int_from_float") or (kind.startswith("int") and "integer" in msg):
        msg = "must be a whole number"
    elif kind == "literal_error":
        msg = msg.replace("Input should be", "must be")
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        if repr(value) in msg or isinstance(value, dict):  # the message names what is wrong
            return msg
    elif kind == "string_pattern_mismatch":
        msg = "must start with a letter and use only letters, digits, '_', '.' and '-'"
    else:
        msg = msg.replace("Input should be", "must be")
    return f"{msg} (got {shown})"


def validate(doc: Document, model: type[BaseModel] = Spec,
             found: tuple[list[Problem], set[tuple[Any, ...]]] | None = None) -> Any:
    """Validate plain data against `model`; every problem becomes one `file:line: path:` line,
    all of them in one run (with the problems already `found` by other checks, and the keys
    they meant), sorted by line."""
    if not isinstance(doc.data, dict):
        raise SpecError.single("", f"a spec must be a mapping of keys, not {type(doc.data).__name__}",
                               doc.source, 1)
    problems, meant = (list(found[0]), set(found[1])) if found else ([], set())
    try:
        result = model.model_validate(doc.data)
    except ValidationError as e:
        problems += _problems(e, model, doc, meant)
    if problems:
        raise SpecError(sorted(problems, key=lambda p: p.line or 0), doc.source) from None
    return result


def _problems(e: ValidationError, model: type[BaseModel], doc: Document,
              meant: set[tuple[Any, ...]]) -> list[Problem]:
    problems = []
    seen = set()
    errors = _dedupe_unions(e.errors())
    misspelled = _misspelled_required(errors, model, doc) | meant
    for err in errors:
        loc = _clean_loc(err["loc"])
        if err["type"] == REQUIRED:  # a key that other keys make required
            loc = (*loc, err["ctx"]["key"])
        if err["type"] == "missing" and loc in misspelled:
            continue  # reported once, as the unknown key with its did-you-mean
        msg = _message(err, model, doc, loc)
        key = (loc, msg)
        if key in seen:
            continue
        seen.add(key)
        problems.append(doc.problem(loc, msg))
    return problems


def _misspelled_required(errors: list[dict[str, Any]], model: type[BaseModel],
                         doc: Document) -> set[tuple[Any, ...]]:
    """Locations of missing keys that an unknown key beside them most likely meant."""
    missing = {_clean_loc(e["loc"]) for e in errors if e["type"] == "missing"}
    found = set()
    for err in errors:
        if err["type"] != "extra_forbidden":
            continue
        loc = _clean_loc(err["loc"])
        candidates = [m[-1] for m in missing if m[:-1] == loc[:-1]]
        close = difflib.get_close_matches(str(loc[-1]), candidates, n=1)
        if close:
            found.add((*loc[:-1], close[0]))
    return found


def _dedupe_unions(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A value failing `int | expression` yields two errors; keep the one that explains most."""
    by_loc: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    order = []
    for err in errors:
        loc = _clean_loc(err["loc"])
        if loc not in by_loc:
            order.append(loc)
        by_loc.setdefault(loc, []).append(err)
    out = []
    for loc in order:
        errs = by_loc[loc]
        if len(errs) > 1 and any(e["type"] != "list_type" for e in errs):
            errs = [e for e in errs if e["type"] != "list_type"]  # a value or a list: the value's
        if len(errs) == 1:
            out.append(errs[0])
            continue
        value_errors = [e for e in errs if e["type"] in ("value_error", "greater_than",
                                                          "greater_than_equal")]
        if value_errors:
            out.append(value_errors[0])
        elif any(e["type"] in ("int_type", "string_type") for e in errs):
            first = dict(errs[0])
            value = first.get("input")
            first["type"] = "value_error"
            first["msg"] = (f"must be a whole number or an expression, not "
                            f"{type(value).__name__}")
            out.append(first)
        else:
            out.append(errs[0])
    return out
