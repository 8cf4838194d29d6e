"""Atomic outputs: every file the CLI writes appears complete or not at all; a failing or
interrupted run leaves a previous file byte-for-byte untouched and no temporary files behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from resnet_compiler import outputs
from resnet_compiler.cli import main

SMALL = {"name": "tiny", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 4,
         "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
PREVIOUS = b"previous contents\n"
FORMATS = [("torch", "model.py"), ("onnx", "model.onnx"), ("graph", "graph.json"),
           ("dot", "graph.dot"), ("summary", "summary.txt")]


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("fmt, name", FORMATS)
def test_spec_error_leaves_previous_output_untouched(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path, fmt: str, name: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SMALL, "num_classes": 0}))
    out = tmp_path / name
    out.write_bytes(PREVIOUS)
    before = _listing(tmp_path)
    code, err = _run(capsys, bad, "--emit", fmt, "-o", out)
    assert code == 2, err
    assert out.read_bytes() == PREVIOUS
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("fmt, name", FORMATS)
def test_success_replaces_the_file_and_leaves_no_temp(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path, spec: Path, fmt: str,
                                                      name: str) -> None:
    out = tmp_path / name
    out.write_bytes(PREVIOUS)
    out.chmod(0o640)
    code, err = _run(capsys, spec, "--emit", fmt, "-o", out)
    assert code == 0, err
    assert out.read_bytes() != PREVIOUS and out.stat().st_size > 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the previous file's mode is kept
    assert _listing(tmp_path) == sorted([spec.name, name])


def test_new_file_gets_umask_permissions(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         spec: Path) -> None:
    """mkstemp creates 0600 files; the output must get the usual 0666 & ~umask instead."""
    old = os.umask(0o022)
    try:
        assert _run(capsys, spec, "--emit", "torch", "-o", tmp_path / "m.py")[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.py").stat().st_mode) == 0o644


def _explode(*_args: object, **_kwargs: object) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("fmt, name", FORMATS)
@pytest.mark.parametrize("where", ["replace", "fsync"])
def test_failure_mid_write_keeps_previous_file(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               spec: Path, fmt: str, name: str, where: str) -> None:
    """A disk-full error after the temp file exists (while syncing the payload, or at the
    rename): exit 1 with one line, previous file unchanged, temp file removed."""
    out = tmp_path / name
    out.write_bytes(PREVIOUS)
    monkeypatch.setattr(outputs.os, where, _explode)
    code, err = _run(capsys, spec, "--emit", fmt, "-o", out)
    assert code == 1, err
    assert "No space left on device" in err and "Traceback" not in err
    assert out.read_bytes() == PREVIOUS
    assert _listing(tmp_path) == sorted([spec.name, name])


def test_interrupt_mid_write_keeps_previous_file(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, spec: Path) -> None:
    """Ctrl-C while the payload is being written: exit 130, nothing half-written anywhere."""
    out = tmp_path / "model.py"
    out.write_bytes(PREVIOUS)
    seen: list[str] = []

    def interrupted(fd: int) -> None:
        seen.extend(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.os, "fsync", interrupted)
    code, err = _run(capsys, spec, "--emit", "torch", "-o", out)
    assert code == 130 and "interrupted" in err
    assert seen and all(s.startswith(".model.py.") for s in seen)  # the temp file was beside it
    assert out.read_bytes() == PREVIOUS
    assert _listing(tmp_path) == sorted([spec.name, out.name])


def test_write_atomic_directly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "data.bin"
    outputs.write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    outputs.write_atomic(target, "text")
    assert target.read_text() == "text"
    monkeypatch.setattr(outputs.os, "replace", _explode)
    with pytest.raises(OSError):
        outputs.write_atomic(target, "new")
    assert target.read_text() == "text"
    assert _listing(tmp_path) == ["data.bin"]


def test_schema_output_is_atomic_too(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    out.write_bytes(PREVIOUS)
    monkeypatch.setattr(outputs.os, "replace", _explode)
    code, _ = _run(capsys, "schema", "-o", out)
    assert code == 1
    assert out.read_bytes() == PREVIOUS
    assert _listing(tmp_path) == ["schema.json"]
