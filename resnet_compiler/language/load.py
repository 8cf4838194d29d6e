"""Safe, line-aware loading of YAML and JSON specs.

YAML is composed with PyYAML's safe composer and turned into plain data by a walker of our own, so
that limits (size, depth, node count after alias expansion) hold before anything else looks at
the data, duplicate keys are errors, and no tag outside plain YAML is ever constructed. Every value
keeps the line it came from, so later stages can point users at `file:line`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import inputs
from ..errors import Problem, SpecError
from ..inputs import StreamTimeout, TooLarge, read_limited

MAX_SPEC_BYTES = int(os.environ.get("RESNET_COMPILER_MAX_SPEC_BYTES", 1 << 20))
MAX_DEPTH = 40
MAX_NODES = 100_000

PathT = tuple[str | int, ...]

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
}


def format_path(path: Iterable[str | int]) -> str:
    """('stages', 1, 'channels') -> 'stages[1].channels'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Document:
    """Plain data from a spec file plus the line of every value in it."""

    data: Any
    source: str = "<spec>"
    lines: dict[PathT, int] = field(default_factory=dict)
    # where a value was written when that is not `source` (a base named by extends:, a library
    # named by use:, or --set); a path not here comes from its nearest ancestor's file
    sources: dict[PathT, str] = field(default_factory=dict)
    libraries: tuple[str, ...] = ()  # the library files named by use: on the way

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            if p in self.lines:
                return self.lines[p] or None  # 0: a value given on the command line
            if not p:
                return None
            p = p[:-1]

    def source_of(self, path: Iterable[str | int]) -> str:
        """The file `path` was written in (or `--set`)."""
        p = tuple(path)
        if self.sources:
            while True:
                if p in self.sources:
                    return self.sources[p]
                if not p:
                    break
                p = p[:-1]
        return self.source

    def problem(self, path: Iterable[str | int], message: str) -> Problem:
        """One problem at `path`, placed at the file and line it was written on."""
        path = tuple(path)
        source = self.source_of(path)
        return Problem(format_path(path), message, self.line_of(path),
                       None if source == self.source else source)

    def error(self, path: Iterable[str | int], message: str) -> SpecError:
        return SpecError([self.problem(path, message)], self.source)


# Documents of files read before, by (path, inode, size, mtime): an extends: chain and a sweep
# compile the same bases again and again. Documents are never changed once loaded.
_CACHE: dict[tuple[Any, ...], Document] = {}
_CACHE_SIZE = 64


def load_file(path: str | os.PathLike[str]) -> Document:
    """Read a spec file with all the limits applied; raises SpecError for anything wrong."""
    source = str(path)
    p = Path(path)
    try:
        if p.is_dir():
            raise SpecError.single("", "is a directory, not a spec file", source)
        st = p.stat()
        key = (source, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if stat.S_ISREG(st.st_mode) and key in _CACHE:
            return _CACHE[key]
        raw = read_limited(p, MAX_SPEC_BYTES)
    except TooLarge as e:
        what = f"file is {e.size} bytes" if e.size is not None else \
            f"the stream sends more than {MAX_SPEC_BYTES} bytes"
        raise SpecError.single("", f"{what}; specs are limited to {MAX_SPEC_BYTES} bytes",
                               source) from None
    except StreamTimeout:
        raise SpecError.single("", f"the stream sent nothing for {inputs.STREAM_WAIT_S:g} s; give a spec"
                                   " file, or write the spec into the stream", source) from None
    except FileNotFoundError:
        raise SpecError.single("", "no such spec file", source) from None
    except PermissionError:
        raise SpecError.single("", "cannot read the spec file: permission denied", source) from None
    except OSError as e:
        raise SpecError.single("", f"cannot read the spec file: {e.strerror or e}", source) from None
    doc = load_bytes(raw, source, json_format=p.suffix.lower() == ".json")
    if stat.S_ISREG(st.st_mode):
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = doc
    return doc


def load_bytes(raw: bytes, source: str = "<spec>", json_format: bool = False) -> Document:
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError.single("", f"spec is {len(raw)} bytes; the limit is {MAX_SPEC_BYTES}", source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError.single("", f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})",
                               source, line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return load_text(text, source, json_format)


def load_text(text: str, source: str = "<spec>", json_format: bool = False) -> Document:
    if "\x00" in text:
        raise SpecError.single("", "file contains NUL bytes; not a text spec", source,
                               text[: text.index("\x00")].count("\n") + 1)
    if json_format:
        data = _load_json(text, source)
        try:
            lines = _YamlWalker(source).lines_only(text)
        except (SpecError, yaml.YAMLError, RecursionError):
            lines = {}
        doc = Document(data, source, lines)
        bad = _non_finite(data, ())
        if bad is not None:
            raise doc.error(bad[0], f"{bad[1]} is not a valid number in a spec")
        return doc
    walker = _YamlWalker(source)
    data = walker.load(text)
    return Document(data, source, walker.lines)


def _key_column(line: str) -> int:
    """Where a line's key starts: after its indentation and any `- ` list markers."""
    column = len(line) - len(line.lstrip(" "))
    rest = line[column:]
    while rest.startswith("- "):
        column += 2 + len(rest[2:]) - len(rest[2:].lstrip(" "))
        rest = line[column:]
    return column


def indentation_hint(text: str, line: int) -> str:
    """A plain-words hint for a YAML error on `line` that bad indentation most likely caused:
    how far the line is indented, and how far the keys it should line up with are."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""

    def meaningful(i: int) -> bool:
        stripped = lines[i].strip()
        return bool(stripped) and not stripped.startswith("#")

    bad = lines[line - 1]
    indent = len(bad) - len(bad.lstrip(" "))
    above = next((i for i in range(line - 2, -1, -1) if meaningful(i)), None)
    if above is None or not meaningful(line - 1):
        return ""
    levels = []
    bound = None
    for i in range(above, -1, -1):
        if meaningful(i):
            column = _key_column(lines[i])
            if bound is None or column < bound:
                levels.append(column)
                bound = column
    if indent in levels:
        return (f" (hint: check the indentation of line {line} and of line {above + 1} above it;"
                " keys of one mapping must start in the same column)")
    key = lines[above].strip().lstrip("- ").split(":")[0]
    expected = " or ".join(str(c) for c in sorted(set(levels)) if c < 40)
    spaces = "1 space" if indent == 1 else f"{indent} spaces"
    return (f" (hint: line {line} is indented {spaces}; '{key}' on line {above + 1} starts at"
            f" column {levels[0]}, and the keys line {line} could line up with at {expected})")


def _load_json(text: str, source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise SpecError.single(k, "duplicate key", source)
            out[k] = v
        return out

    try:  # NaN, Infinity and overflowing numbers are refused afterwards, with their path
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise SpecError.single("", f"JSON syntax error: {e.msg} (column {e.colno})", source,
                               e.lineno) from None
    except RecursionError:
        raise SpecError.single("", f"nested deeper than {MAX_DEPTH} levels", source) from None
    _check_depth(data, source)
    return data


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_nesting(text: str) -> int:
    """How deeply JSON text nests its arrays and objects, counted without parsing it (so text
    nested 100,000 levels deep costs a scan, not a RecursionError)."""
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]", "", _JSON_STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads_json(text: str, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """JSON from a file's metadata (an ONNX model's, a checkpoint's) with the spec loader's
    nesting cap; ValueError, worded for `what`, for anything unreadable."""
    if json_nesting(text) > max_depth:
        raise ValueError(f"{what} is nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{what} is not valid JSON ({str(e).splitlines()[0][:120]})") from None


def _non_finite(data: Any, path: PathT) -> tuple[PathT, str] | None:
    """The first NaN or infinite number in JSON data (Python's json accepts them), if any."""
    if isinstance(data, float) and not math.isfinite(data):
        return path, {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(data)]
    items = data.items() if isinstance(data, dict) else enumerate(data) \
        if isinstance(data, list) else ()
    for key, value in items:
        found = _non_finite(value, (*path, key))
        if found is not None:
            return found
    return None


def _check_depth(data: Any, source: str) -> None:
    stack = [(data, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise SpecError.single("", f"nested deeper than {MAX_DEPTH} levels", source)
        if count > MAX_NODES:
            raise SpecError.single("", f"more than {MAX_NODES} values", source)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


class _YamlWalker:
    """Turns a composed YAML node tree into plain data under explicit limits."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[PathT, int] = {}
        self.count = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def _compose(self, text: str) -> yaml.Node | None:
        try:
            return self._compose_checked(text)
        except yaml.reader.ReaderError as e:  # raised as the loader starts, before any mark
            line = text[: e.position].count("\n") + 1
            what = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
            raise SpecError.single("", f"character {what} (offset {e.position}) is not allowed in"
                                       " a YAML spec", self.source, line) from None

    def _compose_checked(self, text: str) -> yaml.Node | None:
        fast = getattr(yaml, "CSafeLoader", None)  # libyaml's parser, when PyYAML has it
        if fast is not None:
            loader = fast(text)
            try:
                return loader.get_single_node()
            except (yaml.YAMLError, RecursionError):
                pass  # the pure-Python parser below words the error (and its hint) as always
            finally:
                loader.dispose()
        loader = yaml.SafeLoader(text)
        try:
            return loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark else None
            what = e.problem or e.context or "syntax error"
            hint = indentation_hint(text, line) if line else ""
            raise SpecError.single("", f"YAML syntax error: {what}{hint}", self.source,
                                   line) from None
        except yaml.YAMLError as e:
            raise SpecError.single("", f"YAML error: {e}", self.source) from None
        except RecursionError:
            raise SpecError.single("", f"nested deeper than {MAX_DEPTH} levels", self.source) from None
        finally:
            loader.dispose()

    def load(self, text: str) -> Any:
        node = self._compose(text)
        if node is None:
            raise SpecError.single("", "the spec is empty", self.source, 1)
        return self._walk(node, (), 0)

    def lines_only(self, text: str) -> dict[PathT, int]:
        node = self._compose(text)
        if node is not None:
            self._walk(node, (), 0)
        return self.lines

    def _fail(self, node: yaml.Node, path: PathT, message: str) -> SpecError:
        return SpecError.single(format_path(path), message, self.source, node.start_mark.line + 1)

    def _walk(self, node: yaml.Node, path: PathT, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self._fail(node, path, f"more than {MAX_NODES} values after expanding aliases"
                                         " (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise self._fail(node, path, f"nested deeper than {MAX_DEPTH} levels")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise self._fail(node, path, f"YAML tag {node.tag!r} is not allowed in a spec")
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self._fail(key_node, path, "YAML merge keys (<<) are not supported")
                key = self._walk(key_node, path, depth + 1)
                if isinstance(key, int) and not isinstance(key, bool):
                    key = str(key)  # `stages: {2: {depth: 23}}` patches a list item by index
                if not isinstance(key, str):
                    raise self._fail(key_node, path, f"keys must be strings, not {key!r}")
                if key in out:
                    raise self._fail(key_node, (*path, key), "duplicate key")
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self._walk(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self._fail(node, path, f"YAML tag {node.tag!r} is not allowed in a spec")
            return [self._walk(v, (*path, i), depth + 1) for i, v in enumerate(node.value)]
        if node.tag not in _SCALAR_TAGS:
            raise self._fail(node, path, f"YAML tag {node.tag!r} is not allowed in a spec")
        try:
            return self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError) as e:
            raise self._fail(node, path, f"bad value {node.value!r}: {e}") from None
