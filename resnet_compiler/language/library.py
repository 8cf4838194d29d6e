"""The built-in library: the blocks of `blocks.yaml` and the modules of `modules.yaml`,
validated like any spec's own `blocks:` and `modules:`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .load import load_file
from .spec import Library
from .validation import validate

LIBRARY_PATH = Path(__file__).with_name("blocks.yaml")
MODULES_PATH = Path(__file__).with_name("modules.yaml")


@lru_cache(maxsize=1)
def builtin_library() -> Library:
    blocks = validate(load_file(LIBRARY_PATH), Library)
    modules = validate(load_file(MODULES_PATH), Library)
    return blocks.model_copy(update={"modules": modules.modules})
