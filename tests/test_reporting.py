"""What the command line reports: every independent mistake in one run, YAML indentation hints,
`--check -o`, one `wrote PATH` line per written file, library errors that name no flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import ROOT, flat_text, run_cli

import resnet_compiler as rc
from resnet_compiler.errors import UsageError


def _resnet18_with(tmp_path: Path, edit: dict[str, str], extra: str = "") -> Path:
    text = flat_text(ROOT / "spec" / "resnet18.yaml")
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "spec.yaml"
    path.write_text(text + extra)
    return path


def test_three_independent_mistakes_in_one_run_sorted_by_line(tmp_path: Path) -> None:
    spec = _resnet18_with(tmp_path, {"num_classes:": "num_clases:",
                                     "channels: 512": "chanels: 512"},
                          extra="defaults: {conv_bais: true, se: 3}\n")
    out = tmp_path / "m.py"
    r = run_cli(spec, "--emit", "torch", "-o", out)
    assert r.returncode == 2 and not out.exists() and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    numbers = [int(re.match(r".*spec\.yaml:(\d+):", line).group(1)) for line in lines]
    assert numbers == sorted(numbers) and len(lines) == 4, lines
    text = r.stderr
    assert "num_clases" in text and "did you mean 'num_classes'?" in text
    assert "stages[3].chanels: unknown key 'chanels' for block 'basic'" in text
    assert "did you mean 'channels'?" in text and "missing required key 'channels'" not in text
    assert "defaults.conv_bais: unknown key 'conv_bais'" in text and "did you mean 'conv_bias'" in text
    assert "defaults.se: must be a boolean like the default False, got 3" in text


def test_an_unknown_block_and_a_bad_value_are_reported_together(tmp_path: Path) -> None:
    spec = _resnet18_with(tmp_path, {"block: basic": "block: basik", "depth: 2": "depth: 0"})
    r = run_cli(spec, "--check")
    assert r.returncode == 2
    assert "unknown block 'basik'" in r.stderr and "did you mean 'basic'?" in r.stderr
    assert "must be greater than 0" in r.stderr


@pytest.mark.parametrize("text, hint", [
    ("name: x\ninput:\n  channels: 3\n   height: 32\n  width: 32\n",
     "line 4 is indented 3 spaces; 'channels' on line 3 starts at column 2"),
    ("name: x\nstages:\n  - block: basic\n    depth: 2\n   channels: 8\n",
     "line 5 is indented 3 spaces; 'depth' on line 4 starts at column 4"),
])
def test_yaml_indentation_errors_get_a_plain_hint(tmp_path: Path, text: str, hint: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = run_cli(path, "--check")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "YAML syntax error" in r.stderr and hint in r.stderr


def test_check_writes_the_table_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "table.txt"
    r = run_cli(ROOT / "spec" / "resnet18.yaml", "--check", "-o", out)
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr.strip() == f"wrote {out}"
    table = out.read_text()
    assert "11,689,512" in table and "layer4 subtotal" in table
    assert re.search(r"^layer2\.0\.conv1\s+conv\s+128x28x28\s+3\s+2\s+1\s+1\s", table, re.M)


@pytest.mark.parametrize("form, name", [("torch", "m.py"), ("onnx", "m.onnx"), ("graph", "g.json"),
                                        ("dot", "g.dot"), ("summary", "s.txt")])
def test_every_emit_form_says_what_it_wrote(tmp_path: Path, form: str, name: str) -> None:
    out = tmp_path / name
    r = run_cli(ROOT / "spec" / "resnet20_cifar.yaml", "--emit", form, "-o", out)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"wrote {out}" and out.stat().st_size > 0


def test_library_errors_name_no_flags(tmp_path: Path) -> None:
    net = rc.compile(ROOT / "spec" / "resnet20_cifar.yaml")
    with pytest.raises(UsageError) as e:
        net.to_onnx(tmp_path / "m.onnx", opset=99)
    assert "--" not in str(e.value) and "opset 99" in str(e.value)
    with pytest.raises(rc.SpecError) as e:
        rc.compile(ROOT / "spec" / "resnet50.yaml", max_params=1000)
    assert "--" not in str(e.value) and "above the limit of 1,000" in str(e.value)
    r = run_cli(ROOT / "spec" / "resnet50.yaml", "--check", "--max-params", "1000")
    assert r.returncode == 2 and "raise it with --max-params" in r.stderr
