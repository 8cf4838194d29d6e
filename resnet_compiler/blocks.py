"""The built-in block library: `blocks.yaml`, validated like any spec's own `blocks:`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .load import load_file
from .spec import Library, validate

LIBRARY_PATH = Path(__file__).with_name("blocks.yaml")


@lru_cache(maxsize=1)
def builtin_library() -> Library:
    return validate(load_file(LIBRARY_PATH), Library)

