"""Output files: regular files are replaced atomically, streams are written through.

A regular file is written to a temporary file beside it and renamed into place, so a failing or
interrupted run never leaves a half-written file and a previous file stays untouched until the
new one is complete. A symlink to a regular file is followed: its target is replaced, the link
stays. A path that is a stream (a FIFO, a character device such as /dev/null or a terminal, or
/dev/stdout and its kin) is opened and written in one go once the data is complete, and never
renamed over: renaming would replace the device node with a plain file. Anything else (a
directory, a block device, a socket, a file under /proc or /sys) is refused with one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

# How long a FIFO may wait for a process to open it for reading, as a shell redirect would.
FIFO_WAIT_S = float(os.environ.get("RESNET_COMPILER_FIFO_WAIT_S", 10))
_STD_STREAMS = {"/dev/stdout": 1, "/dev/stderr": 2}
_FD_PATH = re.compile(r"^/(?:dev/fd|proc/self/fd|proc/(\d+)/fd)/(\d+)$")
_KERNEL_TREES = ("/proc/", "/sys/")


@dataclass(frozen=True)
class OutputTarget:
    """Where the bytes go: `path` as given, `real` the file renamed over (symlinks followed),
    `stream` for a FIFO or device written through, `fd` for an inherited descriptor."""

    path: Path
    real: Path
    stream: bool = False
    fd: int | None = None


def _fd_of(path: Path) -> int | None:
    """The descriptor of this process that a path such as /dev/stdout, /dev/fd/3 or a symlink
    to one names, if any: following the links by hand, since the kernel's last link leads to
    the open file itself (or to a name like `pipe:[123]`)."""
    current = os.path.abspath(path)
    for _ in range(40):
        if current in _STD_STREAMS:
            return _STD_STREAMS[current]
        found = _FD_PATH.match(current)
        if found and found.group(1) in (None, str(os.getpid())):
            return int(found.group(2))
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def output_target(path: str | os.PathLike[str]) -> OutputTarget:
    """Classify an output path and refuse what cannot be written safely (UsageError), before any
    work is done: directories, block devices, sockets, kernel files, missing or unwritable
    folders, read-only files."""
    p = Path(path)
    fd = _fd_of(p)
    try:
        st = os.stat(p)  # follows symlinks: what the path leads to
    except (FileNotFoundError, NotADirectoryError):  # a new file; its folder is checked below
        st = None
    except OSError as e:
        raise UsageError(f"{p}: cannot use it as an output ({e.strerror or e})") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{p}: is a directory; give a file name for the output")
    if fd is not None:
        if st is None:
            raise UsageError(f"{p}: no such descriptor is open")
        return OutputTarget(p, p, stream=True, fd=fd)
    if st is not None and (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        if not os.access(p, os.W_OK):
            raise UsageError(f"{p}: cannot write to it: permission denied")
        return OutputTarget(p, p, stream=True)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{p}: is {_kind(st.st_mode)}; refusing to write over it")
    real = Path(os.path.realpath(p))
    parent = real.parent
    if not parent.exists():
        raise UsageError(f"{p}: the folder {p.parent if p.parent == parent else parent} does not"
                         " exist")
    if not parent.is_dir():
        raise UsageError(f"{p}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{p}: cannot write in {parent}: permission denied")
    if str(real).startswith(_KERNEL_TREES) or str(real) in ("/proc", "/sys"):
        raise UsageError(f"{p}: is a kernel file ({real}); refusing to write to it")
    if st is not None and not os.access(real, os.W_OK):
        raise UsageError(f"{p}: the file exists and is not writable")
    return OutputTarget(p, real)


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuse outputs that cannot be written (see output_target) before any work is done."""
    output_target(path)
    return Path(path)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write `data` to `path`: a regular file atomically (same-folder temp file, fsync,
    rename), a stream in one write; UsageError for paths that are neither, OSError when the
    system fails the write (a full disk)."""
    target = output_target(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if not target.stream:
        _replace(target.real, payload)
        return target.path
    try:
        _write_through(target, payload)
    except OSError as e:  # a full device, a reader gone: a runtime failure that names the path
        raise OSError(e.errno, e.strerror or str(e), str(target.path)) from None
    return target.path


def _replace(real: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if real.exists():
            os.chmod(tmp, real.stat().st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write_through(target: OutputTarget, payload: bytes) -> None:
    """Open the stream (waiting up to FIFO_WAIT_S for a FIFO's reader) and write everything;
    a descriptor this process inherited (/dev/stdout) is written as it is, offset and all."""
    if target.fd is not None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        _write_all(target.fd, payload)
        return
    fd = _open_stream(target.path)
    try:
        _write_all(fd, payload)
    finally:
        os.close(fd)


def _open_stream(path: Path) -> int:
    flags = os.O_WRONLY | os.O_NOCTTY
    if not stat.S_ISFIFO(os.stat(path).st_mode):
        return os.open(path, flags)
    deadline = time.monotonic() + FIFO_WAIT_S
    while True:  # non-blocking, so a FIFO nobody reads cannot hang the run
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            if time.monotonic() >= deadline:
                raise UsageError(f"{path}: a FIFO, and no process opened it for reading within "
                                 f"{FIFO_WAIT_S:g} s") from None
            time.sleep(0.02)
            continue
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]
