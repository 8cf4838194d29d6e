"""Blocks as small graphs of named values: the wiring errors, the generated code, the ONNX ops,
and torch against onnxruntime for each multi-path op."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from support import ROOT, flat_spec, run_cli, torch_and_onnx

import resnet_compiler as rc
from resnet_compiler.errors import SpecError


def _zoo(name: str, side: int = 32) -> dict[str, Any]:
    spec = flat_spec(ROOT / "spec" / "zoo" / f"{name}.yaml")
    spec["input"] = {"channels": 3, "height": side, "width": side}
    spec["num_classes"] = 5
    return spec


def _block(branch: list[dict[str, Any]], post: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    """A one-block network around a user block with the given branch."""
    return {"name": "mesh", "input": {"channels": 8, "height": 8, "width": 8}, "num_classes": 3,
            "blocks": {"mine": {"out_channels": "channels", "branch": branch,
                                "post": post or [{"op": "relu", "name": "out_act"}]}},
            "stages": [{"block": "mine", "depth": 1, "channels": 8}]}


def _error(spec: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as e:
        rc.compile(spec)
    return str(e.value)


SPLIT_JOIN = [
    {"op": "split", "name": "halves", "parts": 2},
    {"op": "conv", "name": "left", "input": "halves[0]", "channels": 4, "kernel": 3},
    {"op": "conv", "name": "right", "input": "halves[1]", "channels": 4, "kernel": 1},
    {"op": "concat", "name": "joined", "input": ["left", "right"]},
    {"op": "bn", "name": "bn"},
]


def _with(branch: list[dict[str, Any]], index: int, **change: Any) -> dict[str, Any]:
    out = copy.deepcopy(branch)
    out[index].update(change)
    return _block(out)


@pytest.mark.parametrize(("spec", "message"), [
    (_with(SPLIT_JOIN, 0, input="joined"),
     "blocks.mine.branch[0].input: block 'mine': the values form a cycle (halves -> joined ->"
     " left -> halves)"),
    (_with(SPLIT_JOIN, 1, input="right"),
     "blocks.mine.branch[1].input: block 'mine': 'left' reads 'right' before it is defined;"
     " put 'right' first"),
    (_with(SPLIT_JOIN, 3, input=["left", "rihgt"]),
     "blocks.mine.branch[3].input: block 'mine': 'joined' reads 'rihgt', which is never"
     " defined; did you mean 'right'?"),
    (_block([*SPLIT_JOIN[:3], {"op": "concat", "name": "joined", "input": ["left", "left"]},
             SPLIT_JOIN[4]]),
     "blocks.mine.branch[2]: block 'mine': the value of 'right' is computed and never used"),
    (_with(SPLIT_JOIN, 0, parts=None, sizes=[3, 4]),
     "stages[0]: layer1.0.halves: split sizes [3, 4] add up to 7, but the input has 8 channels"),
    (_with(SPLIT_JOIN, 1, input="halves"),
     "block 'mine': 'left' reads the split 'halves' whole; read its parts (halves[0],"
     " halves[1], ..., or halves[*] for all of them)"),
    (_with(SPLIT_JOIN, 1, input="right[0]"),
     "block 'mine': 'left' reads 'right[0]', but 'right' has no parts"),
    (_with(SPLIT_JOIN, 0, when="stride == 1"),
     "blocks.mine.branch[0].when: block 'mine': a split cannot be optional"),
    (_with(SPLIT_JOIN, 4, name="preact"),
     "blocks.mine.branch[4].name: block 'mine': 'preact' is a reserved value name"),
])
def test_wiring_errors_name_the_block_and_the_value(spec: dict[str, Any], message: str) -> None:
    text = _error(spec)
    assert message in text
    assert "\n" not in text.strip()


def test_shape_mismatches_name_the_dimension_and_the_values() -> None:
    added = _with(SPLIT_JOIN, 3, op="add")
    added["blocks"]["mine"]["branch"][2]["channels"] = 6
    assert ("layer1.0.joined: the inputs differ in channels: 4 (input 1) vs 6 (input 2) (inputs:"
            " left 4x8x8, right 6x8x8)") in _error(added)
    strided = _with(SPLIT_JOIN, 2, stride=2)
    assert ("layer1.0.joined: the inputs differ in height: 8 (input 1) vs 4 (input 2) (inputs:"
            " left 4x8x8, right 4x4x4)") in _error(strided)
    softmax = _block([{"op": "reduce", "name": "pooled"},
                      {"op": "softmax", "name": "weights", "radix": 3},
                      {"op": "mul", "name": "gated", "input": ["x", "weights"]}])
    assert ("layer1.0.weights: softmax groups (radix 3 x groups 1 = 3) do not divide the 8"
            " channels") in _error(softmax)


def test_input_outside_a_block_is_refused_by_the_cli(tmp_path: Path) -> None:
    spec = _zoo("skresnet18")
    spec["stem"][0]["input"] = "x"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = run_cli(path, "--check")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "stem[0].input: 'input' is only meaningful inside a block" in r.stderr


def test_a_chain_written_with_inputs_is_the_same_network() -> None:
    """`input:` naming the previous op is what a plain list means: same graph, same code."""
    library = yaml.safe_load((ROOT / "resnet_compiler" / "language" / "builtin" / "resnet.yaml").read_text())
    chain = _zoo("skresnet18")
    chain["blocks"] = {"mine": library["blocks"]["bottleneck"]}
    chain.pop("defaults")
    chain["stages"] = [{**stage, "block": "mine"} for stage in chain["stages"]]
    plain = rc.compile({**chain, "name": "same"})
    branch = chain["blocks"]["mine"]["ops"]
    for prev, op in zip(branch, branch[1:], strict=False):
        op.setdefault("input", prev["name"])
    wired = rc.compile({**chain, "name": "same"})
    def code(net: rc.CompiledNetwork) -> list[str]:
        return [line for line in net.to_torch_source().splitlines() if "sha256" not in line]
    assert code(wired) == code(plain)
    assert list(wired.graph.edges(data=True)) == list(plain.graph.edges(data=True))


def _run_both(spec: dict[str, Any], tmp_path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    _, want, got, path = torch_and_onnx(rc.compile(spec), tmp_path, seed=3)
    return want, got, onnx.load(str(path))


def test_unequal_split_sizes_agree_in_torch_and_onnxruntime(tmp_path: Path) -> None:
    branch = copy.deepcopy(SPLIT_JOIN)
    branch[0] = {"op": "split", "name": "halves", "sizes": ["in_channels - 3", 3]}
    branch[1]["input"], branch[2]["input"] = "halves[0]", "halves[1]"
    want, got, model = _run_both(_block(branch), tmp_path)
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, np.abs(want).max())
    split = next(n for n in model.graph.node if n.op_type == "Split")
    assert list(split.output) == ["layer1.0.halves[0]", "layer1.0.halves[1]"]


@pytest.mark.parametrize("name", ["resnet50_cbam", "resnest50d_4s2x40d"])
def test_multipath_ops_lower_to_plain_onnx_ops(tmp_path: Path, name: str) -> None:
    spec = _zoo(name)
    spec["stages"] = spec["stages"][:2]
    want, got, model = _run_both(spec, tmp_path)
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, np.abs(want).max())
    types = {n.op_type for n in model.graph.node}
    # a mean or max over space is a global pool; over the channels, or a sum, a Reduce* node
    expected = {"Concat", "Mul", "ReduceMean", "ReduceMax", "ReduceSum", "Sigmoid",
                "GlobalAveragePool", "GlobalMaxPool"} \
        if name == "resnet50_cbam" else {"Split", "Add", "Mul", "Softmax", "GlobalAveragePool"}
    assert expected <= types


def test_generated_code_has_a_class_per_module_and_loops_over_paths() -> None:
    source = rc.compile(_zoo("skresnet18")).to_torch_source()
    assert "class SelectiveKernel(nn.Module):" in source
    assert "class SelectiveKernelAttn(nn.Module):" in source
    assert "class ConvNormAct(nn.Module):" in source
    assert "ModuleDict" not in source
    sk = source.split("class SelectiveKernel(nn.Module)")[1].split("\nclass ")[0]
    assert "self.paths = nn.ModuleList(" in sk
    assert "for i in range(len(self.paths)):" in sk
    assert "sum(paths[1:], paths[0])" in sk
    block = source.split("class SelectiveKernelBasic")[1].split("\nclass ")[0]
    assert "self.conv1 = SelectiveKernel(" in block


def test_multipath_block_trains_and_exports_at_any_size(tmp_path: Path) -> None:
    """Backward through in-place activations on shared values, and an any-size ONNX file (the
    radix softmax reshapes to its input's own shape) against torch at two sizes."""
    net = rc.compile(_zoo("resnest14d"))
    model = net.build_torch()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    model.eval()
    path = tmp_path / "any.onnx"
    net.to_onnx(path, weights=model.state_dict(), dynamic_hw=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in ((32, 32), (48, 40)):
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert np.abs(want - got).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_dot_draws_a_block_as_a_cluster_with_its_paths() -> None:
    dot = rc.compile(_zoo("skresnet18")).to_dot("layer2.0")
    assert 'subgraph "cluster_layer2.0"' in dot
    assert 'label="layer2.0 (SelectiveKernelBasic)"' in dot
    assert '"layer2.0.conv1.parts" -> "layer2.0.conv1.paths.1.conv" [label="[1]"]' in dot
    assert 'label="shortcut"' in dot
    assert "layer3" not in dot
