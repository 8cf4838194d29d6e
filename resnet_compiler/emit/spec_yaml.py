"""`--emit spec`: the spec after `extends:`, `use:` and `--set`, as YAML that compiles to the same
network; with `origins`, every value carries the file and line it came from (or `--set`) as a
comment.

A mapping of scalars written on one line of one file stays one flow mapping (`{op: conv, ...}`),
as specs are written; anything else is written in block style, one value per line, so each value
can carry its own origin.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..language.load import Document, PathT

INDENT = "  "
FLOW_WIDTH = 96  # a flow mapping longer than this is written one key per line


def emit_spec(doc: Document, origins: bool = False) -> str:
    writer = _Writer(doc, origins)
    writer.mapping(doc.data, (), 0)
    return "".join(writer.out)


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _key(key: str) -> str:
    return _scalar(key)


def _flat(value: Any) -> bool:
    """Scalars, or lists of scalars: what fits on one line."""
    if isinstance(value, list):
        return all(not isinstance(v, (dict, list)) for v in value)
    return not isinstance(value, dict)


def _in_presets(source: str) -> str | None:
    """`presets/resnet50.yaml` for a file of the shipped presets (wherever they are installed)."""
    from ..language.presets import PRESETS_DIR
    try:
        return "presets/" + Path(source).resolve().relative_to(PRESETS_DIR).as_posix()
    except ValueError:
        return None


class _Writer:
    def __init__(self, doc: Document, origins: bool):
        self.doc = doc
        self.origins = origins
        self.out: list[str] = []

    def origin(self, path: PathT) -> str:
        source = self.doc.source_of(path)
        line = self.doc.line_of(path)
        if source.startswith("--set") or source == "overrides":
            return source
        inside = _in_presets(source)
        if inside:
            return f"{inside}:{line}" if line else inside
        try:
            shown = os.path.relpath(source)
            shown = shown if not shown.startswith("..") else source
        except ValueError:
            shown = source
        return f"{Path(shown).as_posix()}:{line}" if line else Path(shown).as_posix()

    def line(self, indent: int, text: str, path: PathT | None) -> None:
        comment = f"  # {self.origin(path)}" if self.origins and path is not None else ""
        self.out.append(f"{INDENT * indent}{text}{comment}\n")

    def one_origin(self, value: dict[str, Any], path: PathT) -> bool:
        """Whether a mapping of flat values goes on one line: without origins when it fits, with
        them when it was written on one line of one file."""
        if not all(_flat(v) for v in value.values()):
            return False
        if not self.origins:
            return len(_flow(value)) <= FLOW_WIDTH
        where = {(self.doc.source_of((*path, k)), self.doc.line_of((*path, k))) for k in value}
        return len(where) <= 1

    def mapping(self, value: dict[str, Any], path: PathT, indent: int, prefix: str = "") -> None:
        """The keys of `value` at `indent`; with a `- ` prefix, the first key follows it and the
        others line up with it (one level deeper)."""
        inner = indent + (1 if prefix else 0)  # the keys' own level
        for n, (key, item) in enumerate(value.items()):
            lead = prefix if n == 0 else " " * len(prefix)
            self.entry(f"{lead}{_key(key)}:", item, (*path, key), indent, inner + 1)

    def entry(self, head: str, item: Any, path: PathT, indent: int, inner: int) -> None:
        if _flat(item) or (isinstance(item, dict) and item and self.one_origin(item, path)):
            self.line(indent, f"{head} {_flow(item)}", path)
        elif isinstance(item, dict):
            self.line(indent, head, None)
            self.mapping(item, path, inner)
        else:
            self.line(indent, head, None)
            self.sequence(item, path, inner)

    def sequence(self, items: list[Any], path: PathT, indent: int) -> None:
        for i, item in enumerate(items):
            p = (*path, i)
            if isinstance(item, dict) and item and not self.one_origin(item, p):
                self.mapping(item, p, indent, prefix="- ")
            elif isinstance(item, list) and not _flat(item):
                self.line(indent, "-", None)
                self.sequence(item, p, indent + 1)
            else:
                self.line(indent, f"- {_flow(item)}", p)
