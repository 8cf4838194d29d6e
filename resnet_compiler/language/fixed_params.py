"""Module params that fix a class rather than an instance: a param named in an op field that
takes no expression (`fn: act`, `mode: pool`, `bias: bias`), or any param whose value is a word.

Such a field is chosen when the class is written (`nn.SiLU` or `nn.ReLU`, a conv with or without
bias), so each set of their values is its own class, as timm builds SEModule with the act_layer
it is given. The module's ops are validated with the params' defaults in those fields; a call
that gives other values rebinds them and validates again.
"""

from collections.abc import Mapping
from typing import Any

from ..ops import SPEC_OPS

# Keys of an op that are never a param's value: the op's kind, its name and its wiring.
_NOT_VALUES = frozenset({"op", "name", "input", "when"})


def fixed_params(ops: list[Any], params: Mapping[str, Any]) -> set[str]:
    """The params of a module (raw `params`) that its raw `ops` read in literal fields, plus
    every param whose value is a word."""
    found = {k for k, v in params.items() if isinstance(v, str)}
    for op, _key, value in _literal_fields(ops):
        if value in params and not _is_call(op) or value in found:
            found.add(value)
    return found


def bind(ops: list[Any], values: Mapping[str, Any], fixed: set[str]) -> list[Any]:
    """Raw `ops` with each literal field that names a param in `fixed` replaced by its value."""
    out = []
    for op in ops:
        if not isinstance(op, dict):
            out.append(op)
        elif "repeat" in op and "op" not in op and isinstance(op.get("ops"), list):
            out.append({**op, "ops": bind(op["ops"], values, fixed)})
        else:
            literal = _literal_keys(op)
            out.append({k: values[v] if k in literal and isinstance(v, str) and v in fixed
                        else v for k, v in op.items()})
    return out


def _is_call(op: Mapping[str, Any]) -> bool:
    return op.get("op") not in SPEC_OPS


def _literal_keys(op: Mapping[str, Any]) -> set[str]:
    """The keys of raw op `op` that take no expression: every field of an op but its sizes and
    reals; of a module call, none (a word param is passed through by name all the same)."""
    kind = op.get("op")
    if not isinstance(kind, str):
        return set()
    if kind not in SPEC_OPS:
        return {k for k in op if k not in _NOT_VALUES}
    return {k for k in op if k not in _NOT_VALUES} - SPEC_OPS[kind].expression_fields()


def _literal_fields(ops: list[Any]) -> list[tuple[dict[str, Any], str, str]]:
    out = []
    for op in ops:
        if not isinstance(op, dict):
            continue
        if "repeat" in op and "op" not in op and isinstance(op.get("ops"), list):
            out += _literal_fields(op["ops"])
            continue
        out += [(op, k, op[k]) for k in _literal_keys(op) if isinstance(op[k], str)]
    return out
