"""Bounded reads of input files that may be streams (a FIFO, /dev/stdin, an endless device).

A regular file's size is known before reading; a stream's is not, so reading it whole first and
checking the size after would let an endless stream (/dev/zero, `yes > fifo`) fill the memory.
Here at most `limit + 1` bytes are ever read, and a stream that sends nothing for
STREAM_WAIT_S seconds (a FIFO nobody writes to) ends the read instead of hanging the run.
"""

from __future__ import annotations

import os
import select
import stat

STREAM_WAIT_S = float(os.environ.get("RESNET_COMPILER_STREAM_WAIT_S", 30))
CHUNK = 1 << 16


class TooLarge(Exception):
    """The input holds more than the limit; `size` is what is known of its size."""

    def __init__(self, size: int | None):
        super().__init__(size)
        self.size = size


class StreamTimeout(Exception):
    """A stream sent nothing for STREAM_WAIT_S seconds."""


def read_limited(path: str | os.PathLike[str], limit: int, wait_s: float | None = None) -> bytes:
    """The bytes of `path`, at most `limit` of them: TooLarge beyond it (a regular file by its
    size before reading, a stream after limit + 1 bytes), StreamTimeout for a silent stream,
    OSError (FileNotFoundError, PermissionError, ...) as the system reports it."""
    wait = STREAM_WAIT_S if wait_s is None else wait_s
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)  # a FIFO opens at once
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory")
        regular = stat.S_ISREG(st.st_mode)
        if regular and st.st_size > limit:
            raise TooLarge(st.st_size)
        parts: list[bytes] = []
        total = 0
        while total <= limit:
            if not regular:
                ready, _, _ = select.select([fd], [], [], wait)
                if not ready:
                    raise StreamTimeout()
            try:
                chunk = os.read(fd, min(CHUNK, limit + 1 - total))
            except BlockingIOError:
                continue
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
        if total > limit:
            raise TooLarge(st.st_size if regular else None)
        return b"".join(parts)
    finally:
        os.close(fd)
