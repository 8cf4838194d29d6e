"""The built-in library: the blocks of `blocks.yaml` and the modules of `modules.yaml`,
validated like any spec's own `blocks:` and `modules:`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .load import load_file
from .spec import Library, Spec
from .validation import validate

LIBRARY_PATH = Path(__file__).with_name("blocks.yaml")
MODULES_PATH = Path(__file__).with_name("modules.yaml")
# The smallest whole spec around the library: its blocks, modules and shortcuts are then checked
# by the validator every spec needs anyway (one schema to build per process, not two).
_CARRIER: dict[str, Any] = {"name": "library", "input": {"channels": 1, "height": 1, "width": 1},
                            "num_classes": 1, "stages": [{"block": "basic", "depth": 1,
                                                          "channels": 1}]}


@lru_cache(maxsize=1)
def builtin_library() -> Library:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # our own files: the fast parser
    data: dict[str, Any] = {}
    for path in (LIBRARY_PATH, MODULES_PATH):
        data.update(yaml.load(path.read_text(), Loader=loader))  # noqa: S506 - a safe loader
    try:
        spec = Spec.model_validate({**_CARRIER, **data})
    except ValidationError:  # report it as any spec's problems: file, line and path
        for path in (LIBRARY_PATH, MODULES_PATH):
            validate(load_file(path), Library)
        raise
    return Library.model_construct(blocks=spec.blocks, shortcuts=spec.shortcuts,
                                   modules=spec.modules)
