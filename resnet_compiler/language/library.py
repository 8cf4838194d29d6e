"""The built-in library: the blocks, modules and shortcuts of the YAML files in `builtin/`, one
file per family (`resnet`, `resnest`, `res2net`, `sknet`, `attention`, `layers`), validated like
any spec's own `blocks:` and `modules:`. All of them are always in scope; a spec may name the ones
it relies on in `use:`."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .load import load_file
from .spec import Library, Spec
from .validation import validate

BUILTIN_DIR = Path(__file__).with_name("builtin")
# The smallest whole spec around the library: its blocks, modules and shortcuts are then checked
# by the validator every spec needs anyway (one schema to build per process, not two).
_CARRIER: dict[str, Any] = {"name": "library", "input": {"channels": 1, "height": 1, "width": 1},
                            "num_classes": 1, "stages": [{"block": "basic", "depth": 1,
                                                          "channels": 1}]}


def builtin_library_files() -> dict[str, Path]:
    """name -> file of each built-in library."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


def builtin_library_names() -> list[str]:
    return list(builtin_library_files())


# Mixed into the JSON copy's name: a change to what _parsed returns makes old copies unused.
_COPY_FORMAT = b"1"


def parsed_library(files: list[Path], copies: Path) -> dict[str, dict[str, Any]]:
    """The library files' data, merged. Parsing the YAML is a sixth of a --check, so the data is
    also kept as JSON in `copies` (for the built-ins `builtin/__pycache__`, as Python keeps
    bytecode), named by the hash of the files' text: an edited file is parsed again, and a
    folder that cannot be written only costs the parse. JSON is data only; what it holds is
    validated as the YAML would be."""
    texts = [(path.name, path.read_bytes()) for path in files]
    key = hashlib.sha256(_COPY_FORMAT + b"".join(
        b"\0%s\0%d\0%s" % (name.encode(), len(text), text) for name, text in texts))
    copy = copies / f"library.{key.hexdigest()[:20]}.json"
    try:
        return json.loads(copy.read_bytes())
    except (OSError, ValueError):  # none yet, or a damaged one: parse
        pass
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # our own files: the fast parser
    data: dict[str, dict[str, Any]] = {"blocks": {}, "modules": {}, "shortcuts": {}}
    for _, text in texts:
        for kind, items in yaml.load(text, Loader=loader).items():  # noqa: S506 - safe
            data[kind].update(items)
    _keep(copy, data)
    return data


def _keep(path: Path, data: dict[str, Any]) -> None:
    """Write the JSON copy (when it reads back as the same data: YAML has keys JSON lacks) and
    remove the copies of earlier versions of the files."""
    text = json.dumps(data, separators=(",", ":"))
    if json.loads(text) != data:
        return
    try:
        from ..outputs import write_atomic

        path.parent.mkdir(exist_ok=True)
        write_atomic(path, text)
        for old in path.parent.glob("library.*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:  # a read-only install: parse each time
        pass


@lru_cache(maxsize=1)
def builtin_library() -> Library:
    files = list(builtin_library_files().values())
    data = parsed_library(files, BUILTIN_DIR / "__pycache__")
    try:
        spec = Spec.model_validate({**_CARRIER, **data})
    except ValidationError:  # report it as any spec's problems: file, line and path
        for path in files:
            validate(load_file(path), Library)
        raise
    return Library.model_construct(blocks=spec.blocks, shortcuts=spec.shortcuts,
                                   modules=spec.modules)
