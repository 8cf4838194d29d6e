"""What expansion keeps across compiles: built-in blocks are the same in every compile, so their
templates, and the nodes of each distinct block instance, are built once (design-space sweeps
compile thousands of specs)."""

from __future__ import annotations

from typing import Any

SHARED_TEMPLATES: dict[tuple[Any, ...], Any] = {}  # BlockTemplate by key
SHARED_EXPANSIONS: dict[tuple[Any, ...], tuple[list[Any], str]] = {}  # (nodes, output) by key
MAX_SHARED = 20_000


def remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Keep `value`, emptying the cache first when it is full."""
    if len(cache) >= MAX_SHARED:
        cache.clear()
    cache[key] = value
