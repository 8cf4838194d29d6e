"""The command line: every error class of the spec language, and the outputs of each form."""

from __future__ import annotations

import json
import re
from pathlib import Path

import networkx as nx
import pytest
from support import ROOT, flat_text, run_cli

RESNET18 = flat_text(ROOT / "spec" / "resnet18.yaml")
ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<path>[^:]+): (?P<msg>.+)$")


def _spec(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _edit(old: str, new: str) -> str:
    assert old in RESNET18
    return RESNET18.replace(old, new, 1)


INVALID = {
    # case: (file name, text, spec path named in the message, words the message contains)
    "yaml-syntax": ("s.yaml", "name: x\ninput: {channels: 3, height: 32\n", None, "YAML syntax"),
    "json-syntax": ("s.json", '{"name": "x",\n "input": {"channels": 3,}\n}', None, "JSON syntax"),
    "unknown-key": ("s.yaml", _edit("num_classes: 1000", "num_clases: 1000"), "num_clases",
                    "did you mean 'num_classes'"),
    "unknown-op": ("s.yaml", _edit("op: maxpool", "op: maxpoool"), "stem[3]", "did you mean 'maxpool'"),
    "unknown-block": ("s.yaml", _edit("block: basic, depth: 2, channels: 128",
                                      "block: basik, depth: 2, channels: 128"),
                      "stages[1].block", "did you mean 'basic'"),
    "wrong-type": ("s.yaml", _edit("depth: 2, channels: 128", "depth: two, channels: 128"),
                   "stages[1].depth", "whole number"),
    "bool-for-int": ("s.yaml", _edit("depth: 2, channels: 128", "depth: true, channels: 128"),
                     "stages[1].depth", "whole number"),
    "zero-size": ("s.yaml", _edit("channels: 256, stride: 2", "channels: 0, stride: 2"),
                  "stages[2].channels", "greater than 0"),
    "negative-size": ("s.yaml", _edit("kernel: 7, stride: 2", "kernel: -7, stride: 2"),
                      "stem[0].kernel", "greater than 0"),
    "float-size": ("s.yaml", _edit("channels: 256, stride: 2", "channels: 25.5, stride: 2"),
                   "stages[2].channels", "whole number"),
    "indivisible-groups": ("s.yaml", _edit("kernel: 7, stride: 2", "kernel: 7, stride: 2, groups: 2"),
                           "stem[0]", "groups=2 must divide"),
    "shrinks-below-1x1": ("s.yaml", _edit("height: 224, width: 224", "height: 4, width: 4").replace(
        "kernel: 7, stride: 2", "kernel: 7, stride: 2, padding: 0"), "stem[0]", "below 1x1"),
    "unequal-add": ("s.yaml", """name: bad_add
input: {channels: 3, height: 32, width: 32}
num_classes: 10
blocks:
  mine:
    out_channels: channels * 2
    branch:
      - {op: conv, channels: channels, kernel: 3, stride: stride}
stages:
  - {block: mine, depth: 1, channels: 16, stride: 2}
""", "stages[0]", "cannot add the branch 16x16x16 to the shortcut 32x16x16"),
    "missing-key": ("s.yaml", _edit("num_classes: 1000\n", ""), "num_classes", "missing"),
    "bad-stage-param": ("s.yaml", _edit("channels: 128, stride: 2", "channels: 128, stride: 2, se: 1"),
                        "stages[1].se", "boolean"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_spec_is_one_line_exit_2_and_no_output(tmp_path: Path, case: str) -> None:
    name, text, spec_path, words = INVALID[case]
    spec = _spec(tmp_path, name, text)
    out = tmp_path / "model.py"
    r = run_cli(spec, "--emit", "torch", "-o", out)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{spec}:"), lines[0]
    assert re.match(rf"^{re.escape(str(spec))}:\d+: ", lines[0]), lines[0]
    if spec_path:
        m = ERROR_LINE.match(lines[0])
        assert m and m["path"] == spec_path, lines[0]
    assert words in lines[0]


def test_error_line_points_at_the_offending_line(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "s.yaml", _edit("channels: 256, stride: 2", "channels: 0, stride: 2"))
    r = run_cli(spec, "--check")
    line_no = next(i for i, t in enumerate(spec.read_text().splitlines(), 1) if "channels: 0" in t)
    assert r.stderr.startswith(f"{spec}:{line_no}: stages[2].channels:")


def test_missing_spec_file(tmp_path: Path) -> None:
    r = run_cli(tmp_path / "nope.yaml", "--check")
    assert r.returncode == 2
    assert r.stderr.strip() == f"{tmp_path / 'nope.yaml'}: no such spec file"


def test_usage_errors_exit_2_without_traceback() -> None:
    for args in ([], ["spec/resnet18.yaml"], ["spec/resnet18.yaml", "--emit", "tensorflow"],
                 ["spec/resnet18.yaml", "--emit", "onnx"], ["spec/resnet18.yaml", "--bogus"]):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.strip()


def test_check_prints_every_op_and_the_totals() -> None:
    r = run_cli("spec/resnet50.yaml", "--check")
    assert r.returncode == 0, r.stderr
    assert "25,557,032" in r.stdout and "4,089,184,256" in r.stdout
    row = r"^layer4\.2\.conv3\s+conv\s+2048x7x7\s+1\s+1\s+1\s+1\s+1,048,576\s+51,380,224$"
    assert re.search(row, r.stdout, re.M)
    assert re.search(r"^fc\s+linear\s+1000\s", r.stdout, re.M)


def test_check_works_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    fake = tmp_path / "notorch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("torch is not available here")\n')
    env = {"PYTHONPATH": str(fake.parent), "PATH": "/usr/bin:/bin"}
    r = run_cli("spec/resnet152.yaml", "--check", env=env)
    assert r.returncode == 0, r.stderr
    assert "60,192,808" in r.stdout
    r = run_cli("spec/resnet152.yaml", "--emit", "torch", "-o", tmp_path / "m.py", env=env)
    assert r.returncode == 0, r.stderr
    assert "class ResNet152(nn.Module):" in (tmp_path / "m.py").read_text()


def test_emit_torch_to_stdout_equals_file(tmp_path: Path) -> None:
    a = run_cli("spec/resnet18.yaml", "--emit", "torch")
    b = run_cli("spec/resnet18.yaml", "--emit", "torch", "-o", tmp_path / "m.py")
    assert a.returncode == b.returncode == 0
    assert a.stdout == (tmp_path / "m.py").read_text()


def test_emit_graph_json_and_dot(tmp_path: Path) -> None:
    r = run_cli("spec/resnet18.yaml", "--emit", "graph", "-o", tmp_path / "g.json")
    assert r.returncode == 0, r.stderr
    g = nx.node_link_graph(json.loads((tmp_path / "g.json").read_text()), edges="edges")
    assert g.nodes["layer2.0.downsample.0"]["shape"] == [128, 28, 28]
    assert g.graph["total_params"] == 11_689_512
    assert nx.is_directed_acyclic_graph(g)
    r = run_cli("spec/resnet18.yaml", "--emit", "dot")
    assert r.returncode == 0
    assert r.stdout.startswith('digraph "resnet18" {')
    assert '"layer1.0.add"' in r.stdout and "shortcut" in r.stdout
    # layer1's two blocks are the same: drawn once, marked x2, wired on to layer2
    assert 'label="layer1.0 … layer1.1 (BasicBlock) x2";' in r.stdout
    assert '"layer1.0.act2" -> "layer2.0.conv1";' in r.stdout and '"layer1.1.' not in r.stdout
    r = run_cli("spec/resnet18.yaml", "--emit", "dot", "--unfold")
    assert r.returncode == 0
    assert '"layer1.0.act2" -> "layer1.1.conv1";' in r.stdout
    assert '"layer1.1.act2" -> "layer2.0.conv1";' in r.stdout


def test_schema_command_prints_the_bundled_schema() -> None:
    r = run_cli("schema")
    assert r.returncode == 0
    assert json.loads(r.stdout) == json.loads((ROOT / "spec" / "resnet-spec.schema.json").read_text())
