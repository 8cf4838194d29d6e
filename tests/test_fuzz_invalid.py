"""Property-based fuzzing with broken specs: single mutations of valid ones (wrong types, negative,
zero and float sizes, unknown and missing keys, bad names, shape-breaking windows, indivisible
groups). Through the real CLI each must exit 2 with `file:line: spec.path: problem` lines that
name the mutated place, no traceback, and no output file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CAPSYS_OK, examples
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import Mutation, invalid_specs, valid_specs

from resnet_compiler.cli import main

CLI = shutil.which("resnet-compile") or str(Path(sys.executable).with_name("resnet-compile"))
LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<path>[^:\s]+): (?P<message>.+)$")


def _write(folder: Path, spec: dict[str, Any], fmt: str) -> Path:
    path = folder / f"broken.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(spec, indent=1))  # NaN/Infinity become JSON's extensions
    else:
        path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


def _related(reported: str, expected: str) -> bool:
    """The error names the mutated path, one of its parents, or one of its children."""
    def under(a: str, b: str) -> bool:
        return a == b or a.startswith((b + ".", b + "["))
    return under(reported, expected) or under(expected, reported)


def check_refusal(stderr: str, spec_file: Path, mutation: Mutation) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines, "no error message"
    paths = []
    for line in lines:
        m = LINE.match(line)
        assert m, f"not `file:line: spec.path: problem`: {line!r}"
        assert m["file"] == str(spec_file)
        assert int(m["line"]) >= 1
        paths.append(m["path"])
    assert any(_related(p, e) for p in paths for e in mutation.paths), (mutation.kind, lines)


@settings(max_examples=examples(120), suppress_health_check=CAPSYS_OK)
@given(invalid_specs(), st.sampled_from(["yaml", "json"]))
def test_mutated_specs_exit_2_with_located_messages(tmp_path_factory: pytest.TempPathFactory,
                                                    capsys: pytest.CaptureFixture[str],
                                                    mutation: Mutation, fmt: str) -> None:
    folder = tmp_path_factory.mktemp("invalid")
    spec_file = _write(folder, mutation.spec, fmt)
    out = folder / "model.py"
    capsys.readouterr()
    code = main([str(spec_file), "--emit", "torch", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 2, (mutation.kind, captured.err)
    assert captured.out == ""
    check_refusal(captured.err, spec_file, mutation)
    assert sorted(p.name for p in folder.iterdir()) == [spec_file.name]  # no output, no temp file


@settings(max_examples=examples(40), suppress_health_check=CAPSYS_OK)
@given(invalid_specs())
def test_mutated_specs_are_refused_by_check_too(tmp_path_factory: pytest.TempPathFactory,
                                                capsys: pytest.CaptureFixture[str],
                                                mutation: Mutation) -> None:
    """`--check` (no torch needed) refuses the same specs the emitter does."""
    spec_file = _write(tmp_path_factory.mktemp("check"), mutation.spec, "yaml")
    capsys.readouterr()
    assert main([str(spec_file), "--check"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    check_refusal(captured.err, spec_file, mutation)


@settings(max_examples=examples(3, most=60))
@given(invalid_specs())
def test_mutated_specs_through_a_real_process(tmp_path_factory: pytest.TempPathFactory,
                                              mutation: Mutation) -> None:
    """The installed entry point, in its own process: exit status 2, stderr only."""
    folder = tmp_path_factory.mktemp("process")
    spec_file = _write(folder, mutation.spec, "yaml")
    out = folder / "model.py"
    r = subprocess.run([CLI, str(spec_file), "--emit", "torch", "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    check_refusal(r.stderr, spec_file, mutation)
    assert not out.exists()


@settings(max_examples=examples(30), suppress_health_check=CAPSYS_OK)
@given(valid_specs(max_side=64))
def test_valid_specs_pass_the_cli(tmp_path_factory: pytest.TempPathFactory,
                                  capsys: pytest.CaptureFixture[str], spec: dict[str, Any]) -> None:
    """The control group: the unmutated specs exit 0 and write exactly the output file."""
    folder = tmp_path_factory.mktemp("valid")
    spec_file = _write(folder, spec, "yaml")
    out = folder / "model.py"
    capsys.readouterr()
    assert main([str(spec_file), "--emit", "torch", "-o", str(out)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == sorted([spec_file.name, out.name])
    assert out.read_text().startswith('"""')
