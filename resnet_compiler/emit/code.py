"""Shared pieces of the PyTorch emitters: indentation, module paths nested into containers."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

from .pyformat import WIDTH

INDENT = "    "


def docstring(text: str, indent: str) -> list[str]:
    """A docstring that fits the width: one line if it can, else wrapped."""
    one = f'{indent}"""{text}"""'
    if len(one) <= WIDTH:
        return [one]
    body = textwrap.wrap(text, WIDTH - len(indent) - 3)
    return [f'{indent}"""{body[0]}', *[indent + b for b in body[1:]], f'{indent}"""']


def indented(lines: Iterable[str], depth: int = 2) -> list[str]:
    return [f"{INDENT * depth}{line}" if line else "" for line in lines]


def group_modules(modules: list[tuple[str, list[str]]],
                  conditions: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Modules with dotted paths as nested containers, per top-level name: an nn.Sequential,
    positional where the keys are 0, 1, ..., named otherwise, as torchvision and timm hold such
    groups (torchvision's Conv2dNormActivation); the forward reads its children one by one."""
    grouped: dict[str, list[tuple[str, list[str]]]] = {}
    for path, body in modules:
        top, _, rest = path.partition(".")
        grouped.setdefault(top, []).append((rest, body))
    out = {}
    for top, children in grouped.items():
        body = holder(nest(children))
        lines = [f"self.{top} = {body[0]}", *body[1:]]
        condition = (conditions or {}).get(top)
        if condition is not None:  # built where its members' one condition holds, else None
            lines = [f"if {condition}:", *(INDENT + line for line in lines), "else:",
                     f"{INDENT}self.{top} = None"]
        out[top] = lines
    return out


def nest(entries: list[tuple[str, list[str]]]) -> list[tuple[str, Any]]:
    root: list[tuple[str, Any]] = []
    index: dict[tuple[str, ...], list[tuple[str, Any]]] = {(): root}
    for path, lines in entries:
        *containers, leaf = path.split(".")
        level, key = root, ()
        for part in containers:
            key = (*key, part)
            if key not in index:
                index[key] = []
                level.append((part, index[key]))
            level = index[key]
        level.append((leaf, lines))
    return root


def holder(children: list[tuple[str, Any]]) -> list[str]:
    numbered = all(key.isdigit() for key, _ in children)
    order = sorted(children, key=lambda c: int(c[0])) if numbered else children
    lines = ["nn.Sequential("] if numbered else ["nn.Sequential(", f"{INDENT}OrderedDict("]
    pad = INDENT if numbered else INDENT * 2
    for key, child in order:
        body = child if isinstance(child[0], str) else holder(child)
        head = "" if numbered else f"{key}="
        lines += [f"{pad}{head}{body[0]}", *(pad + b for b in body[1:])]
        lines[-1] += ","
    return [*lines, ")"] if numbered else [*lines, f"{INDENT})", ")"]


Entry = tuple[str, list[str]]  # a module path and the lines of its constructor expression


def tree(entries: list[Entry]) -> list[tuple[str, Any]]:
    """Entries nested by their dotted paths, in order (consecutive paths share containers)."""
    root: list[tuple[str, Any]] = []
    for path, lines in entries:
        level = root
        *containers, leaf = path.split(".")
        for key in containers:
            if not level or level[-1][0] != key or isinstance(level[-1][1][0], str):
                level.append((key, []))
            level = level[-1][1]
        level.append((leaf, lines))
    return root
