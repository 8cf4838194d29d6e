"""Atomic output files: write to a temporary file beside the target, then rename into place.

A failing or interrupted run therefore never leaves a half-written file, and a previous file at
the same path stays untouched until the new one is complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UsageError


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuse directories, missing folders and unwritable places before any work is done."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{p}: is a directory; give a file name for the output")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise UsageError(f"{p}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise UsageError(f"{p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{p}: cannot write in {parent}: permission denied")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{p}: the file exists and is not writable")
    return p


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write `data` to `path` atomically (same-folder temp file, fsync, rename)."""
    p = check_output_path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if p.exists():
            os.chmod(tmp, p.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p
