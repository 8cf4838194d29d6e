"""Hypothesis strategies for hostile files: random bytes, truncations and mutations of valid
specs, checkpoints and ONNX models, as a careless or hostile user would hand them over.

Each strategy draws bytes (what ends up in the file); the valid originals come from the caller,
so one strategy serves a YAML spec, a JSON spec, a torch checkpoint and a safetensors file alike.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# values a careless edit leaves behind, in YAML's words
_YAML_JUNK = ["", "-", ":", "[", "]", "{", "}", "&a", "*a", "!!python/name:os.system", "<<: *a",
              ".nan", "-.inf", "1e999", "0x10", "0o7", "~", "null", "true", "'", '"', "#",
              "999999999999999999999", "-1", "0", "1.5", "log2(0)", "max()", "1/0",
              "make_divisible(8, 0)", "int(1e309)", "channels * 1e12", "\t", "\x00", "\ufeff",
              "é", "\\", "%TAG", "---", "...", "? x", "|", ">"]


def random_bytes(max_size: int = 2048) -> st.SearchStrategy[bytes]:
    """Anything at all: binary noise, text noise, empty files."""
    return st.one_of(st.binary(max_size=max_size),
                     st.text(max_size=max_size // 4).map(lambda t: t.encode("utf-8", "replace")))


def truncations(valid: bytes) -> st.SearchStrategy[bytes]:
    """`valid` cut short anywhere (a download or a copy that stopped)."""
    return st.integers(0, max(0, len(valid) - 1)).map(lambda n: valid[:n])


@st.composite
def byte_flips(draw: st.DrawFn, valid: bytes, start: int = 0, most: int = 8) -> bytes:
    """`valid` with a few bytes at or after `start` overwritten by random ones (a bad disk)."""
    data = bytearray(valid)
    if len(data) <= start:
        return bytes(data)
    for _ in range(draw(st.integers(1, most))):
        i = draw(st.integers(start, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def text_mutations(draw: st.DrawFn, valid: str) -> bytes:
    """`valid` spec text edited by hand: lines deleted, duplicated, swapped, re-indented, or a
    token replaced by junk."""
    lines = valid.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent", "token",
                                     "append"]))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
        elif kind == "dedent":
            lines[i] = lines[i].lstrip()
        elif kind == "append":
            lines[i] += draw(st.sampled_from(_YAML_JUNK))
        else:
            words = lines[i].replace(",", " , ").replace(":", " : ").split(" ")
            if words:
                k = draw(st.integers(0, len(words) - 1))
                words[k] = draw(st.sampled_from(_YAML_JUNK) | st.text(max_size=6))
            lines[i] = " ".join(words)
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _leaves(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _leaves(v, (*path, i))
    return out


_JUNK_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**15, 10**15),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["log2(0)", "max()", "1/0", "make_divisible(8, 0)", "int(1e309)",
                     "channels * 1000000 * 1000000", "__import__('os')", "-1", "0"]),
    st.lists(st.integers(-3, 3), max_size=3), st.just({}), st.just([]))


@st.composite
def data_mutations(draw: st.DrawFn, valid: Any) -> Any:
    """A copy of the plain data `valid` (a spec, a metadata record) with one value replaced by
    junk, a key removed, or an empty container filled with deep nesting."""
    data = json.loads(json.dumps(valid))
    paths = _leaves(data)
    path = draw(st.sampled_from(paths))
    kind = draw(st.sampled_from(["replace", "remove", "nest"]))
    if not path:
        return draw(_JUNK_VALUES) if kind == "replace" else data
    *parent_path, key = path
    parent = data
    for p in parent_path:
        parent = parent[p]
    if kind == "remove" and isinstance(parent, dict):
        del parent[key]
    elif kind == "nest":
        depth = draw(st.integers(30, 200))  # past the loaders' cap of 40, within json.dumps'
        parent[key] = json.loads("[" * depth + "]" * depth)
    else:
        parent[key] = draw(_JUNK_VALUES)
    return data


def hostile_versions(valid: bytes, text: bool) -> st.SearchStrategy[bytes]:
    """Every kind of hostile file made from one valid one."""
    kinds = [random_bytes(), truncations(valid), byte_flips(valid)]
    if text:
        kinds.append(text_mutations(valid.decode("utf-8")))
    return st.one_of(*kinds)
