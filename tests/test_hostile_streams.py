"""Specs read from streams: an endless device or FIFO is read up to the size limit plus one
byte and refused, a silent FIFO ends after the wait limit, a FIFO or pipe with a writer that
sends a spec compiles."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from resnet_compiler import inputs
from resnet_compiler.cli import main
from resnet_compiler.language import load

SMALL = {"name": "tiny", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 4,
         "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
LIMIT = f"specs are limited to {load.MAX_SPEC_BYTES} bytes"


def _run(*argv: object) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue().strip().splitlines()


class EndlessWriter:
    """A thread that writes `chunk` into a FIFO until the reader goes away."""

    def __init__(self, path: Path, chunk: bytes):
        self.sent = 0
        self.thread = threading.Thread(target=self._write, args=(path, chunk), daemon=True)
        self.thread.start()

    def _write(self, path: Path, chunk: bytes) -> None:
        try:
            with open(path, "wb") as f:
                while self.sent < 1 << 30:
                    f.write(chunk)
                    self.sent += len(chunk)
        except (BrokenPipeError, OSError):
            pass


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_device_is_refused_after_the_limit(device: str) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        code, lines = _run(device, "--check")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 2 and lines == [f"{device}: the stream sends more than "
                                   f"{load.MAX_SPEC_BYTES} bytes; {LIMIT}"], lines
    assert time.perf_counter() - start < 10
    assert peak < 4 * load.MAX_SPEC_BYTES, peak


def test_fifo_with_an_endless_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    writer = EndlessWriter(fifo, b"# comment\n" * 1000)
    code, lines = _run(fifo, "--check")
    assert code == 2 and lines[0].endswith(LIMIT), lines
    writer.thread.join(10)
    assert not writer.thread.is_alive()  # the reader closed; the writer saw a broken pipe
    assert writer.sent <= load.MAX_SPEC_BYTES + (1 << 20)


def test_fifo_with_a_writer_sending_a_spec(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    text = yaml.safe_dump(SMALL).encode()

    def send() -> None:
        time.sleep(0.2)  # the reader opens first and waits
        with open(fifo, "wb") as f:
            f.write(text)
    threading.Thread(target=send, daemon=True).start()
    out = tmp_path / "model.py"
    code, lines = _run(fifo, "--emit", "torch", "-o", out)
    assert code == 0, lines
    assert "class Tiny" in out.read_text()


def test_silent_fifo_ends_after_the_wait_limit(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "STREAM_WAIT_S", 0.3)
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    start = time.perf_counter()
    code, lines = _run(fifo, "--check")
    assert code == 2 and lines == [f"{fifo}: the stream sent nothing for 0.3 s; give a spec "
                                   "file, or write the spec into the stream"], lines
    assert time.perf_counter() - start < 5


def test_spec_from_stdin_through_a_real_process(tmp_path: Path) -> None:
    text = yaml.safe_dump(SMALL)
    exe = Path(sys.executable).with_name("resnet-compile")
    r = subprocess.run([str(exe), "/dev/stdin", "--check"], input=text, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "tiny: input 3x16x16, 4 classes" in r.stdout, r.stderr
    r = subprocess.run(f"head -c 3000000 /dev/zero | {exe} /dev/stdin --check", shell=True,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().endswith(LIMIT), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_read_limited_directly(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 10)
    assert inputs.read_limited(f, 10) == b"x" * 10
    with pytest.raises(inputs.TooLarge) as e:
        inputs.read_limited(f, 9)
    assert e.value.size == 10
    with pytest.raises(inputs.TooLarge) as e:
        inputs.read_limited("/dev/zero", 100)
    assert e.value.size is None
    with pytest.raises(IsADirectoryError):
        inputs.read_limited(tmp_path, 100)
