"""Small text helpers every message in the package uses, so they read the same everywhere."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest option, or ''."""
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def format_shape(shape: Iterable[int]) -> str:
    """(64, 56, 56) -> '64x56x56'; a scalar's empty shape -> 'scalar'."""
    return "x".join(map(str, shape)) or "scalar"


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when it has none), cut to `limit`."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def format_bytes(n: int) -> str:
    """A memory size in the largest binary unit that keeps it at least 1 (44.6 MiB, 3.4 TiB)."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    value, unit = float(n), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:,.1f} {units[unit]}" if unit else f"{n} bytes"
