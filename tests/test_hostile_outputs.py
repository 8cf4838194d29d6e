"""Output paths that are not regular files: a FIFO, a character device, /dev/stdout, a symlink
to a device are written through (opened and written, never renamed over); a block device, a
socket or a directory is refused with one line. For -o, --emit onnx -o, bench --csv/--json and
the files of train --out."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from support import run_cli as run_process
from support import run_main

import resnet_compiler as rc
from resnet_compiler import outputs

SMALL = {"name": "tiny", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 4,
         "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
TINY_GRAY = {"name": "tiny", "input": {"channels": 1, "height": 8, "width": 8}, "num_classes": 10,
             "stages": [{"block": "basic", "depth": 1, "channels": 8}]}


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def null_device(folder: Path) -> Path:
    """A character device that swallows writes: a node of /dev/null's numbers made in `folder`
    where this process may create one (root), else /dev/null itself (which a process that may
    not create device nodes cannot rename over either)."""
    node = folder / "null-device"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return node
    except PermissionError:
        return Path("/dev/null")


def block_device(folder: Path) -> Path | None:
    """A block device: made in `folder` where allowed (numbers no driver answers to), else one
    of the machine's (unwritable to this process); None in a container that has neither."""
    node = folder / "block-device"
    try:
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(240, 0))
        return node
    except PermissionError:
        return next((p for p in Path("/dev").iterdir() if p.is_block_device()), None)


def _is_same_device(path: Path, before: os.stat_result) -> bool:
    now = os.stat(path)
    return stat.S_ISCHR(now.st_mode) and now.st_rdev == before.st_rdev and \
        now.st_ino == before.st_ino


class FifoReader:
    """A thread that opens a FIFO for reading (after `delay` s) and keeps what it receives."""

    def __init__(self, path: Path, delay: float = 0.0):
        self.data = b""
        self.thread = threading.Thread(target=self._read, args=(path, delay), daemon=True)
        self.thread.start()

    def _read(self, path: Path, delay: float) -> None:
        threading.Event().wait(delay)
        with open(path, "rb") as f:
            self.data = f.read()

    def result(self) -> bytes:
        self.thread.join(30)
        return self.data


# ---- character devices and symlinks to them --------------------------------------------------

@pytest.mark.parametrize("argv", [["--check"], ["--emit", "torch"], ["--emit", "onnx"],
                                  ["--emit", "graph"]])
def test_character_device_is_written_through(tmp_path: Path, spec: Path,
                                             argv: list[str]) -> None:
    device = null_device(tmp_path)
    before = os.stat(device)
    code, lines = run_main(spec, *argv, "-o", device)
    assert code == 0, lines
    assert lines == [f"wrote {device}"]
    assert _is_same_device(device, before)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_symlink_to_a_device_keeps_link_and_device(tmp_path: Path, spec: Path) -> None:
    device = null_device(tmp_path)
    before = os.stat(device)
    link = tmp_path / "model.onnx"
    link.symlink_to(device)
    assert run_main(spec, "--emit", "onnx", "-o", link)[0] == 0
    assert link.is_symlink() and Path(os.readlink(link)) == device
    assert _is_same_device(device, before)


def test_symlink_to_a_file_replaces_the_target(tmp_path: Path, spec: Path) -> None:
    target = tmp_path / "real" / "model.py"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "model.py"
    link.symlink_to(target)
    assert run_main(spec, "--emit", "torch", "-o", link)[0] == 0
    assert link.is_symlink()
    assert target.read_text() == rc.compile(spec).to_torch_source()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.py"]


def test_full_device_fails_with_one_line(tmp_path: Path, spec: Path) -> None:
    """/dev/full takes the open and refuses the write: a runtime failure (exit 1), one line,
    the device left alone."""
    full = Path("/dev/full")
    before = os.stat(full)
    code, lines = run_main(spec, "--emit", "torch", "-o", full)
    assert code == 1 and len(lines) == 1 and "No space left on device" in lines[0], lines
    assert _is_same_device(full, before)


# ---- FIFOs -----------------------------------------------------------------------------------

def test_fifo_with_a_reader_gets_the_same_bytes(tmp_path: Path, spec: Path) -> None:
    regular = tmp_path / "regular.onnx"
    assert run_main(spec, "--emit", "onnx", "-o", regular)[0] == 0
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    reader = FifoReader(fifo, delay=0.3)  # opened after the write began waiting
    assert run_main(spec, "--emit", "onnx", "-o", fifo)[0] == 0
    assert reader.result() == regular.read_bytes()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_fifo_nobody_reads_is_refused(tmp_path: Path, spec: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "FIFO_WAIT_S", 0.3)
    fifo = tmp_path / "model.py"
    os.mkfifo(fifo)
    code, lines = run_main(spec, "--emit", "torch", "-o", fifo)
    assert code == 2 and lines == [f"error: {fifo}: a FIFO, and no process opened it for reading"
                                   " within 0.3 s"], lines
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# ---- /dev/stdout -----------------------------------------------------------------------------

def test_dev_stdout_to_a_pipe_and_to_a_file(tmp_path: Path, spec: Path) -> None:
    want = rc.compile(spec).to_torch_source()
    r = run_process(spec, "--emit", "torch", "-o", "/dev/stdout")
    assert r.returncode == 0 and r.stdout == want, r.stderr
    redirected = tmp_path / "out.py"
    with open(redirected, "w") as f:
        inode = os.fstat(f.fileno()).st_ino
        exe = Path(__import__("sys").executable).with_name("resnet-compile")
        r = subprocess.run([str(exe), str(spec), "--emit", "torch", "-o", "/dev/stdout"],
                           stdout=f, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert redirected.read_text() == want and redirected.stat().st_ino == inode


# ---- refused ---------------------------------------------------------------------------------

def test_block_device_socket_and_kernel_file_are_refused(tmp_path: Path, spec: Path) -> None:
    block = block_device(tmp_path)
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        targets = [(sock_path, "is a socket; refusing to write over it")]
        if block is not None:
            targets.append((block, "is a block device; refusing to write over it"))
        for target, words in targets:
            before = os.stat(target)
            code, lines = run_main(spec, "--emit", "onnx", "-o", target)
            assert code == 2 and lines == [f"error: {target}: {words}"], lines
            after = os.stat(target)
            assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    code, lines = run_main(spec, "--check", "-o", "/proc/self/status")
    assert code == 2 and len(lines) == 1, lines


# ---- bench --csv/--json and train --out ------------------------------------------------------

def test_bench_tables_to_devices_and_fifos(tmp_path: Path, spec: Path) -> None:
    model = tmp_path / "m.onnx"
    assert run_main(spec, "--emit", "onnx", "-o", model)[0] == 0
    device = null_device(tmp_path)
    before = os.stat(device)
    fifo = tmp_path / "table.csv"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    code, lines = run_main("bench", model, "--batch", "1", "--runs", "1", "--warmup", "0",
                       "--rounds", "1", "--csv", fifo, "--json", device)
    assert code == 0, lines
    assert reader.result().decode().splitlines()[0].startswith("runtime")
    assert _is_same_device(device, before) and stat.S_ISFIFO(os.stat(fifo).st_mode)
    code, lines = run_main("bench", model, "--json", tmp_path)
    assert code == 2 and lines == [f"error: {tmp_path}: is a directory; give a file name for "
                                   "the output"], lines


def test_train_out_files_through_devices(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY_GRAY))
    out = tmp_path / "run"
    out.mkdir()
    device = null_device(tmp_path)
    before = os.stat(device)
    (out / "model.pth").symlink_to(device)
    (out / "curves.png").symlink_to(device)
    code, lines = run_main("train", spec, "--dataset", "digits", "--epochs", "1", "--batch-size",
                       "256", "--out", out)
    assert code == 0, lines
    assert _is_same_device(device, before)
    assert (out / "model.pth").is_symlink() and (out / "curves.png").is_symlink()
    assert (out / "checkpoint.pt").stat().st_size > 0
    (out / "metrics.csv").unlink()
    (out / "metrics.csv").mkdir()
    code, lines = run_main("train", spec, "--dataset", "digits", "--epochs", "1", "--out", out,
                       "--overwrite")
    assert code == 2 and lines == [f"error: {out / 'metrics.csv'}: is a directory; give a file "
                                   "name for the output"], lines
