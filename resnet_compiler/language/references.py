"""Checks of what a spec refers to by name, run on the raw data beside pydantic's validation so
that one run reports every independent mistake: stages naming unknown blocks or shortcuts, and
block params (set per stage or in `defaults`) that no block used has, or of the wrong kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Problem
from ..messages import did_you_mean
from .library import builtin_library
from .load import Document
from .spec import OP_KINDS, Library, Spec
from .validation import validate

STAGE_KEYS = ("block", "depth", "channels", "stride", "name", "block_names", "shortcut",
              "dilation", "norm", "act", "aa", "attn")
DEFAULTS_KEYS = ("conv_bias", "zero_init_last_bn", "shortcut", "norm", "act", "conv", "aa",
                 "attn", "drop_path_rate")

Path = tuple[str | int, ...]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return "a whole number" if isinstance(value, int) else "a number"


def same_kind(default: Any, value: Any) -> bool:
    """A param value may replace its default: bool for bool, int for int, finite number for float."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def _library(data: Mapping[str, Any], kind: str, builtin: Mapping[str, Any]) -> dict[str, Any]:
    own = data.get(kind)
    return {**builtin, **(own if isinstance(own, dict) else {})}


def _params(block: Any) -> dict[str, Any]:
    if hasattr(block, "params"):
        return dict(block.params)
    params = block.get("params") if isinstance(block, dict) else None
    return params if isinstance(params, dict) else {}


def validate_spec(doc: Document) -> Spec:
    """A whole spec validated: the checks of names and params against the built-in library
    and the spec's own, then the models, every problem reported in one run."""
    return validate(doc, Spec, reference_problems(doc, builtin_library()))


def reference_problems(doc: Document, library: Library) -> tuple[list[Problem], set[Path]]:
    """Problems with names and params, and the required-key locations an unknown key most likely
    meant (pydantic's 'missing' there would repeat the same mistake)."""
    data = doc.data
    if not isinstance(data, dict):
        return [], set()
    blocks = _library(data, "blocks", library.blocks)
    shortcuts = _library(data, "shortcuts", library.shortcuts)
    problems: list[Problem] = []
    meant: set[Path] = set()

    def report(path: Path, message: str) -> None:
        problems.append(doc.problem(path, message))

    modules = _library(data, "modules", library.modules)
    for path, op in _ops(data):
        kind = op.get("op")
        if not isinstance(kind, str) or kind in OP_KINDS:
            continue
        if kind not in modules:
            known = [*OP_KINDS, *modules]
            report(path, f"unknown op or module {kind!r} (ops: {', '.join(OP_KINDS)};"
                   f" modules: {', '.join(modules)}){did_you_mean(kind, known)}")

    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    _check_shortcut(defaults.get("shortcut"), ("defaults", "shortcut"), shortcuts, report)
    own = data.get("blocks")
    for name, block in (own.items() if isinstance(own, dict) else ()):
        if isinstance(block, dict):  # a block's own shortcut, reported at the block's line
            _check_shortcut(block.get("shortcut"), ("blocks", name, "shortcut"), shortcuts, report)
    used: dict[str, Any] = {}
    stages = data.get("stages") if isinstance(data.get("stages"), list) else []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue
        path: Path = ("stages", i)
        _check_shortcut(stage.get("shortcut"), (*path, "shortcut"), shortcuts, report)
        name = stage.get("block")
        if not isinstance(name, str):
            continue
        if name not in blocks:
            used_libraries = f"; use: {', '.join(doc.libraries)} does not define it" \
                if doc.libraries else ""
            report((*path, "block"), f"unknown block {name!r}{used_libraries} (blocks: "
                   f"{', '.join(sorted(blocks))}){did_you_mean(name, blocks)}")
            continue
        params = _params(blocks[name])
        used.update({k: v for k, v in params.items() if k not in used})
        missing = [k for k in ("depth", "channels") if k not in stage]
        for key, value in stage.items():
            if key in STAGE_KEYS:
                continue
            if key not in params:
                report((*path, key), f"unknown key {key!r} for block {name!r} (params: "
                       f"{', '.join(params) or 'none'}){did_you_mean(key, [*params, *STAGE_KEYS])}")
                close = did_you_mean(key, missing)
                if close:
                    meant.add((*path, close.split("'")[1]))
            elif isinstance(value, list):  # one value per block of the stage
                depth = stage.get("depth")
                if isinstance(depth, int) and len(value) != depth:
                    report((*path, key), f"gives {len(value)} values for the stage's {depth}"
                           " blocks; give one per block (or a single value)")
                for v in value:
                    if not same_kind(params[key], v):
                        report((*path, key), f"must be {_kind(params[key])} like the default"
                               f" {params[key]!r}, got {v!r}")
                        break
            elif not same_kind(params[key], value):
                report((*path, key), f"must be {_kind(params[key])} like the default"
                       f" {params[key]!r}, got {value!r}")
    if used or not stages:
        for key, value in defaults.items():
            if key in DEFAULTS_KEYS:
                continue
            if key not in used:
                known = sorted({*used, *DEFAULTS_KEYS})
                report(("defaults", key), f"unknown key {key!r}: not a setting and not a param "
                       f"of any block used (known: {', '.join(known)}){did_you_mean(key, known)}")
            elif not same_kind(used[key], value):
                report(("defaults", key), f"must be {_kind(used[key])} like the default"
                       f" {used[key]!r}, got {value!r}")
    return problems, meant


def _check_shortcut(name: Any, path: Path, shortcuts: Mapping[str, Any], report: Any) -> None:
    if isinstance(name, str) and name not in shortcuts and name != "none":  # none: no shortcut
        report(path, f"unknown shortcut {name!r} (shortcuts: {', '.join(sorted(shortcuts))})"
               f"{did_you_mean(name, shortcuts)}")


def _ops(data: Mapping[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    """Every op mapping of a spec with its path: stem, head.pre, blocks, modules, shortcuts,
    loops opened."""
    found: list[tuple[Path, dict[str, Any]]] = []

    def walk(items: Any, path: Path, depth: int = 0) -> None:
        # loops do not nest; deeper ones are the models' one error, not a deep recursion here
        if not isinstance(items, list) or depth > 1:
            return
        for i, op in enumerate(items):
            if isinstance(op, dict) and "repeat" in op and "op" not in op:
                walk(op.get("ops"), (*path, i, "ops"), depth + 1)
            elif isinstance(op, dict):
                found.append(((*path, i), op))

    walk(data.get("stem"), ("stem",))
    head = data.get("head")
    if isinstance(head, dict):
        walk(head.get("pre"), ("head", "pre"))
    for kind, sections in (("blocks", ("branch", "post", "ops")), ("modules", ("ops",))):
        group = data.get(kind)
        for name, body in (group.items() if isinstance(group, dict) else ()):
            for section in sections:
                if isinstance(body, dict):
                    walk(body.get(section), (kind, name, section))
    shortcuts = data.get("shortcuts")
    for name, ops in (shortcuts.items() if isinstance(shortcuts, dict) else ()):
        walk(ops, ("shortcuts", name))
    return found
