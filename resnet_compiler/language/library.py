"""The built-in library: the blocks, modules and shortcuts of the YAML files in `builtin/`, one
file per family (`resnet`, `resnest`, `res2net`, `sknet`, `attention`, `layers`), validated like
any spec's own `blocks:` and `modules:`. All of them are always in scope; a spec may name the ones
it relies on in `use:`."""

from __future__ import annotations

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


@lru_cache(maxsize=1)
def builtin_library() -> Library:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # our own files: the fast parser
    data: dict[str, dict[str, Any]] = {"blocks": {}, "modules": {}, "shortcuts": {}}
    files = builtin_library_files().values()
    for path in files:
        for kind, items in yaml.load(path.read_text(), Loader=loader).items():  # noqa: S506 - safe
            data[kind].update(items)
    try:
        spec = Spec.model_validate({**_CARRIER, **data})
    except ValidationError:  # report it as any spec's problems: file, line and path
        for path in files:
            validate(load_file(path), Library)
        raise
    return Library.model_construct(blocks=spec.blocks, shortcuts=spec.shortcuts,
                                   modules=spec.modules)
