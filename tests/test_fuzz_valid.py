"""Property-based fuzzing with random valid specs: every one compiles, the shapes the compiler
infers are the ones torch (and ONNX) actually produce, torch and onnxruntime compute the same
function, and the emitted source is ruff-clean and byte-for-byte deterministic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import torch
import yaml
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import BLOCKS, SHORTCUTS, STEMS, valid_specs
from support import module_shapes

import resnet_compiler as rc
from resnet_compiler.ops import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
CLI = shutil.which("resnet-compile") or str(Path(sys.executable).with_name("resnet-compile"))
NON_MODULE_OPS = tuple(k for k, op in REGISTRY.items() if op.functional or k == "input")


def _check_graph(net: rc.CompiledNetwork) -> None:
    g = net.graph
    assert nx.is_directed_acyclic_graph(g)
    assert g.nodes[g.graph["output"]]["shape"] == (g.graph["num_classes"],)
    assert net.total_params == sum(d["params"] for _, d in g.nodes(data=True))
    implied = {b.id for stage in net.layout.stages for b in stage.blocks
               if net.layout.classes[b.class_name].residual}  # blocks whose add is implied
    for node, data in g.nodes(data=True):
        assert all(isinstance(s, int) and s >= 1 for s in data["shape"]), (node, data["shape"])
        if data["op"] == "add" and node.endswith(".add") and node[:-4] in implied:
            roles = sorted(d["role"] for _, _, d in g.in_edges(node, data=True))
            assert roles == ["branch", "shortcut"]


@settings(max_examples=examples(100))
@given(valid_specs(max_side=4096))
def test_every_valid_spec_compiles(spec: dict[str, Any]) -> None:
    """The cheap property, on many examples: dict and YAML text compile to the same graph."""
    net = rc.compile(spec)
    _check_graph(net)
    assert "total" in net.summary().lower()
    assert net.to_graph_json()


@settings(max_examples=examples(30))
@given(valid_specs(max_side=256), st.sampled_from(["yaml", "json"]))
def test_spec_files_compile_like_dicts(tmp_path_factory: pytest.TempPathFactory,
                                       spec: dict[str, Any], fmt: str) -> None:
    """Loading from a file (line-aware loader) gives the same network as the dict."""
    path = tmp_path_factory.mktemp("spec") / f"net.{fmt}"
    path.write_text(yaml.safe_dump(spec, sort_keys=False) if fmt == "yaml" else json.dumps(spec))
    from_file, from_dict = rc.compile(path), rc.compile(spec)
    assert from_file.graph.graph["spec_sha256"] == from_dict.graph.graph["spec_sha256"]
    assert from_file.to_torch_source() == from_dict.to_torch_source()


def _ruff(source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RUFF, "check", "--no-cache", "--stdin-filename", "generated_model.py",
                           "-"], input=source, capture_output=True, text=True, cwd=ROOT)


@settings(max_examples=examples(40))
@given(valid_specs(max_side=512))
def test_emitted_source_is_ruff_clean_and_deterministic(spec: dict[str, Any]) -> None:
    first = rc.compile(spec).to_torch_source()
    second = rc.compile(json.loads(json.dumps(spec))).to_torch_source()
    assert first == second
    result = _ruff(first)
    assert result.returncode == 0, result.stdout + result.stderr


@settings(max_examples=examples(4, most=60))
@given(valid_specs(max_side=128))
def test_emitted_source_is_identical_across_processes(tmp_path_factory: pytest.TempPathFactory,
                                                      spec: dict[str, Any]) -> None:
    """Hash randomisation must not reach the output: two interpreters, two hash seeds."""
    folder = tmp_path_factory.mktemp("determinism")
    path = folder / "net.yaml"
    path.write_text(yaml.safe_dump(spec))
    outputs = []
    for seed in ("1", "2"):
        out = folder / f"model_{seed}.py"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([CLI, str(path), "--emit", "torch",
                        "-o", str(out)], check=True, env=env, capture_output=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == rc.compile(path).to_torch_source().encode()


def calibrate(module: torch.nn.Module, input_shape: tuple[int, ...], seed: int) -> dict[str, Any]:
    """Realistic BatchNorm statistics: random affine parameters, then running statistics measured
    on random data (a fresh eval-mode net has identity statistics and its activations explode)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
        module.train()
        for _ in range(2):
            module(torch.randn(8, *input_shape, generator=gen))
    module.eval()
    return module.state_dict()


@settings(max_examples=examples(25, most=400))
@given(valid_specs(max_side=72), st.integers(0, 2**16))
def test_inferred_shapes_equal_torch_shapes(spec: dict[str, Any], seed: int) -> None:
    """Forward hooks on the generated module: every op node's shape is torch's actual shape, the
    state_dict has exactly the graph's tensors, and the parameter count agrees."""
    torch.manual_seed(seed)
    net = rc.compile(spec)
    module = net.build_torch().eval()
    x = torch.randn(2, *net.input_shape)
    actual = module_shapes(module, x)
    g = net.graph
    for node, data in g.nodes(data=True):
        if data["op"] in NON_MODULE_OPS:
            continue
        assert node in actual, f"graph node {node} is not a module of the generated code"
        assert actual[node] == data["shape"], (node, actual[node], data["shape"])
    expected = {f"{node}.{name}": shape for node, data in g.nodes(data=True)
                for name, shape in data["tensors"].items()}
    state = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert state == expected
    assert sum(p.numel() for p in module.parameters()) == net.total_params
    out = module(x)
    assert out.shape == (2, spec["num_classes"])


# ---- ONNX: shape inference and runtime equality ------------------------------------------------

def _inferred_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """ONNX's own shape inference (the emitter's value_info removed first), batch dropped."""
    import onnx

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(bare, strict_mode=True)
    out: dict[str, tuple[int, ...]] = {}
    for info in inferred.graph.value_info:
        dims = info.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims[1:]), info
        out[info.name] = tuple(d.dim_value for d in dims[1:])
    return out


def _max_rel_error(a: Any, b: Any) -> float:
    import numpy as np
    scale = max(1.0, float(np.abs(a).max()))
    return float(np.abs(a - b).max()) / scale


@settings(max_examples=examples(20, most=300))
@given(valid_specs(max_side=64), st.integers(0, 2**16), st.sampled_from([True, False]))
def test_onnx_matches_torch(tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any],
                            seed: int, fold_bn: bool) -> None:
    """Realistic weights through torch (fp32, eval) and onnxruntime agree within
    max|a-b| <= 1e-4 * max(1, max|a|); ONNX shape inference gives the graph's shape at every
    node; the same spec and weights give a byte-identical file."""
    import onnx
    import onnxruntime as ort

    from resnet_compiler.emit.onnx import emit_onnx, value_names

    torch.manual_seed(seed)
    net = rc.compile(spec)
    module = net.build_torch()
    state = calibrate(module, net.input_shape, seed)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    net.to_onnx(path, weights=state, fold_bn=fold_bn)
    data = path.read_bytes()
    assert emit_onnx(rc.compile(spec).graph, weights=state, fold_bn=fold_bn) == data

    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    inferred = _inferred_shapes(model)
    g = net.graph
    for node, value in value_names(g, fold_bn).items():
        if value in ("input", "logits"):
            continue
        attrs = g.nodes[node]
        if attrs["op"] == "split":  # its parts are the ONNX values
            for i, size in enumerate(attrs["sizes"]):
                assert inferred[f"{value}[{i}]"] == (size, *attrs["shape"][1:]), (node, i)
            continue
        assert inferred[value] == attrs["shape"], (node, value, inferred[value])

    x = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = module(x).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == expected.shape == (3, spec["num_classes"])
    assert _max_rel_error(expected, got) <= 1e-4


def test_strategy_reaches_every_kind() -> None:
    """The generator is not silently narrow: every block, stem and shortcut kind appears."""
    seen: dict[str, set[str]] = {"block": set(), "stem": set(), "shortcut": set()}

    @settings(max_examples=300, database=None)
    @given(valid_specs())
    def collect(spec: dict[str, Any]) -> None:
        for stage in spec["stages"]:
            seen["block"].add(stage["block"])
            if "shortcut" in stage:
                seen["shortcut"].add(stage["shortcut"])
        names = [op.get("name") for op in spec["stem"]]
        seen["stem"].add("none" if not names else "deep" if "stem_conv1" in names else
                         "imagenet" if "maxpool" in names else "small")

    collect()
    assert seen["block"] == set(BLOCKS)
    assert seen["stem"] == set(STEMS)
    assert seen["shortcut"] == set(SHORTCUTS)
