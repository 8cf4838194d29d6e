"""Layering specs: a base, then each file that extends it, then command-line overrides.

Mappings merge key by key, scalars and lists replace, and `_replace_: true` in a mapping replaces
the base's mapping wholesale (mmengine's `_delete_`). A mapping given where the base has a list
patches the list's items without restating them: by index (`stages: {2: {depth: 23}}`), by name
(`stages: {layer3: ...}`; a stage's name is its `name:` or layer1, layer2, ...; an op's is its
`name:`), or all of them (`"*"`). Every value keeps the file and line it was written on, so the
errors of the merged spec point at the layer that wrote them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..errors import SpecError
from .load import Document, PathT, format_path

REPLACE = "_replace_"
ALL_ITEMS = "*"


def _copy(value: Any) -> Any:
    """A deep copy of plain data (mappings, lists, scalars), faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _subpaths(value: Any, path: PathT) -> Iterator[PathT]:
    """`path` and the path of every value inside `value`."""
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _subpaths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _subpaths(v, (*path, i))


def item_names(items: list[Any], path: PathT) -> list[str | None]:
    """The name of each item of a list, for patches by name: a stage's `name:` or its default
    layer1, layer2, ...; an op's `name:`."""
    stages = path == ("stages",)
    out: list[str | None] = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        out.append(name if isinstance(name, str) else f"layer{i + 1}" if stages else None)
    return out


def item_index(items: list[Any], key: Any, path: PathT) -> int | None:
    """The index that `key` (an index, or a name) picks from `items`, or None."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key if 0 <= key < len(items) else None
    if isinstance(key, str) and key.isdigit():
        return int(key) if int(key) < len(items) else None
    names = item_names(items, path)
    return names.index(key) if key in names else None


def no_item(items: list[Any], key: Any, path: PathT) -> str:
    """Why `key` picks nothing from the list at `path`: its size, names, and a did-you-mean."""
    what = "stage" if path == ("stages",) else "item"
    import difflib
    names = [n for n in item_names(items, path) if n]
    known = f", or a name: {', '.join(names)}" if names else ""
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    count = f"{len(items)} {what}{'s' if len(items) != 1 else ''}"
    shown = key if isinstance(key, int) or str(key).isdigit() else repr(key)
    return (f"no {what} {shown} to set in {format_path(path)} ({count}: an index 0 to "
            f"{len(items) - 1}{known}){hint}" if items else f"{format_path(path)} is empty")


class Layers:
    """Spec data built up from layers, with the file and line of every value in it."""

    def __init__(self, doc: Document):
        self.source = doc.source
        self.data = _copy(doc.data)
        self.libraries: list[str] = []
        if doc.sources or not doc.lines:  # a merged document, or data without lines
            self.lines: dict[PathT, int] = {}
            self.sources: dict[PathT, str] = {}
            self._record(self.data, (), (), doc)
        else:  # a file as loaded: every value has its line already
            self.lines = {p: line or 0 for p, line in doc.lines.items()}
            self.sources = dict.fromkeys(doc.lines, doc.source)

    def document(self) -> Document:
        """The merged spec, named after the last file applied."""
        return Document(self.data, self.source, self.lines, self.sources, tuple(self.libraries))

    def apply(self, doc: Document) -> None:
        """Lay `doc`'s data (a mapping) over what is here."""
        self.source = doc.source
        self.data = self._merge(self.data, doc.data, (), (), doc)

    def drop(self, key: str) -> None:
        """Remove a top-level key (one that belongs to the file that wrote it, e.g. `peer`)."""
        if isinstance(self.data, dict) and key in self.data:
            del self.data[key]
            self._forget((key,))

    def set(self, path: tuple[str, ...], value: Any, source: str = "--set") -> None:
        """Set the value at a dotted path (`stages.2.depth`): missing mappings are made (the
        schema then says what is unknown), list items are picked by index or name."""
        doc = Document(value, source)
        node, done = self.data, ()
        for i, key in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                index = item_index(node, key, done)
                if index is None:
                    raise SpecError.single(".".join(path), no_item(node, key, done), source)
                key = index
            elif isinstance(node, dict):
                if not last and not isinstance(node.get(key), (dict, list)):
                    if key in node:
                        raise SpecError.single(".".join(path), f"{format_path((*done, key))} is "
                                               f"{node[key]!r}, not a mapping or a list", source)
                    node[key] = {}
                    self.sources[(*done, key)] = source
                    self.lines[(*done, key)] = 0
            else:
                raise SpecError.single(".".join(path), f"{format_path(done)} is {node!r}, not a"
                                       " mapping or a list", source)
            if last:
                self._forget((*done, key))
                node[key] = self._take(value, (*done, key), (), doc)
            else:
                node, done = node[key], (*done, key)

    # -- merging -----------------------------------------------------------------------------

    def _merge(self, base: Any, child: Any, out: PathT, cin: PathT, doc: Document) -> Any:
        if isinstance(child, dict) and isinstance(base, (dict, list)) and not self._replaces(
                child, cin, doc):
            if isinstance(base, list):
                if out == ("stages",) or self._all_items(base, child, out):
                    return self._patch_items(base, child, out, cin, doc)
                self._forget(out)  # another form of the value (`head: {pool: avg}`): it replaces
                return self._take(child, out, cin, doc)
            for key, value in child.items():
                if key == REPLACE:
                    continue
                if key in base:
                    base[key] = self._merge(base[key], value, (*out, key), (*cin, key), doc)
                    self.lines[(*out, key)] = doc.lines.get((*cin, key), 0)
                    self.sources[(*out, key)] = doc.source_of((*cin, key))
                else:
                    base[key] = self._take(value, (*out, key), (*cin, key), doc)
            return base
        self._forget(out, base)
        return self._take(child, out, cin, doc)

    def _patch_items(self, base: list[Any], patch: dict[str, Any], out: PathT, cin: PathT,
                     doc: Document) -> list[Any]:
        for key, value in patch.items():
            if key == REPLACE:
                continue
            if key == ALL_ITEMS:
                picked = range(len(base))
            else:
                index = item_index(base, key, out)
                if index is None:
                    raise doc.error((*cin, key), no_item(base, key, out).replace(" to set ", " to "
                                                                                 "patch "))
                picked = range(index, index + 1)
            for i in picked:
                base[i] = self._merge(base[i], value, (*out, i), (*cin, key), doc)
        return base

    @staticmethod
    def _all_items(base: list[Any], patch: dict[str, Any], out: PathT) -> bool:
        """Whether every key of `patch` picks items of `base` (then it patches them)."""
        keys = [k for k in patch if k not in (REPLACE, ALL_ITEMS)]
        return bool(patch) and all(item_index(base, k, out) is not None for k in keys)

    @staticmethod
    def _replaces(child: dict[str, Any], cin: PathT, doc: Document) -> bool:
        flag = child.get(REPLACE, False)
        if not isinstance(flag, bool):
            raise doc.error((*cin, REPLACE), f"must be true or false (got {flag!r})")
        return flag

    def _take(self, value: Any, out: PathT, cin: PathT, doc: Document) -> Any:
        """A layer's value, placed at `out` with its origins (any `_replace_` in it dropped:
        there is nothing under it to replace)."""
        value = self._without_replace(value, cin, doc)
        self._record(value, out, cin, doc)
        return value

    def _without_replace(self, value: Any, cin: PathT, doc: Document) -> Any:
        if isinstance(value, dict):
            if REPLACE in value:
                self._replaces(value, cin, doc)
            return {k: self._without_replace(v, (*cin, k), doc) for k, v in value.items()
                    if k != REPLACE}
        if isinstance(value, list):
            return [self._without_replace(v, (*cin, i), doc) for i, v in enumerate(value)]
        return value

    def _record(self, value: Any, out: PathT, cin: PathT, doc: Document) -> None:
        n = len(out)
        for path in _subpaths(value, out):
            inner = (*cin, *path[n:])
            self.lines[path] = doc.line_of(inner) or 0
            self.sources[path] = doc.source_of(inner) if doc.sources else doc.source

    def _forget(self, out: PathT, old: Any = None) -> None:
        """Drop the origins of the value at `out` (`old`: that value, when known; a scalar has
        no values inside it)."""
        if old is not None and not isinstance(old, (dict, list)):
            self.lines.pop(out, None)
            self.sources.pop(out, None)
            return
        n = len(out)
        for table in (self.lines, self.sources):
            for path in [p for p in table if p[:n] == out]:
                del table[path]
