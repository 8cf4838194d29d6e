"""fp16 and bf16 ONNX (`--dtype`): weights stored and computed in 16 bits, reductions and norms in
fp32, fp32 input and output unless --no-keep-io-types; fp16 within its stated tolerance (1e-2 of
the largest logit) of torch fp32; bf16 files valid (onnxruntime's CPU provider cannot run them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from support import MIX, ROOT, run_cli

import resnet_compiler as rc
from resnet_compiler.cli import main as cli_main
from resnet_compiler.emit.lowp import FP32_OPS, to_bf16_bits, to_fp16
from resnet_compiler.emit.onnx import emit_onnx
from resnet_compiler.runtime.verify import TOLERANCES
from resnet_compiler.runtime.weights import init_weights

F, F16, BF16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16
SMALL = ROOT / "spec" / "resnet20_cifar.yaml"


def _setup(spec) -> tuple[rc.CompiledNetwork, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    net = rc.compile(spec)
    sd = init_weights(net.graph, realistic_bn=True)
    model = net.build_torch().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(1).standard_normal((4, *net.input_shape), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    return net, sd, x, want


def _rel(want: np.ndarray, got: np.ndarray) -> float:
    return float(np.abs(want - got.astype(np.float32)).max() / max(1.0, np.abs(want).max()))


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    out = {t.name: t.data_type for t in g.initializer}
    out.update({v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)})
    return out


@pytest.mark.parametrize("spec", [MIX, SMALL], ids=["mixed ops", "resnet20_cifar"])
def test_fp16_within_tolerance_of_torch_fp32(spec) -> None:
    net, sd, x, want = _setup(spec)
    data = emit_onnx(net.graph, weights=sd, dtype="fp16")
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    types = _elem_types(model)
    assert model.graph.input[0].type.tensor_type.elem_type == F
    assert model.graph.output[0].type.tensor_type.elem_type == F
    assert {p.key: p.value for p in model.metadata_props}["dtype"] == "fp16"
    for node in model.graph.node:  # convs in fp16, reductions and norms in fp32
        if node.op_type in ("Conv", "Gemm"):
            assert all(types[i] == F16 for i in node.input), node.name
        if node.op_type in FP32_OPS:
            assert types[node.input[0]] == F and types[node.output[0]] == F, node.name
    inits = model.graph.initializer
    assert sum(t.data_type == F16 for t in inits) >= 0.8 * len(inits)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.dtype == np.float32
    err = _rel(want, got)
    assert err <= TOLERANCES["fp16"][0]
    assert (want.argmax(1) == got.argmax(1)).all()


def test_fp16_any_size() -> None:
    net = rc.compile(MIX)
    sd = init_weights(net.graph, realistic_bn=True)
    model = net.build_torch().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    data = emit_onnx(net.graph, weights=sd, dtype="fp16", dynamic_hw=True)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((2, 3, 48, 40), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert _rel(want, session.run(None, {"input": x})[0]) <= TOLERANCES["fp16"][0]


def test_fp16_without_io_casts_takes_and_returns_fp16() -> None:
    net, sd, x, want = _setup(SMALL)
    data = emit_onnx(net.graph, weights=sd, dtype="fp16", keep_io_types=False)
    model = onnx.load_from_string(data)
    assert model.graph.input[0].type.tensor_type.elem_type == F16
    assert model.graph.output[0].type.tensor_type.elem_type == F16
    assert not any(n.op_type == "Cast" and n.input[0] == "input" for n in model.graph.node)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.astype(np.float16)})[0]
    assert got.dtype == np.float16
    assert _rel(want, got) <= TOLERANCES["fp16"][0]


def test_bf16_file_is_valid_and_holds_rounded_weights() -> None:
    net, sd, _, _ = _setup(MIX)
    model = onnx.load_from_string(emit_onnx(net.graph, weights=sd, dtype="bf16"))
    assert model.opset_import[0].version == 22  # Conv takes bfloat16 from opset 22
    onnx.checker.check_model(model, full_check=True)
    types = _elem_types(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(types[i] == BF16 for n in convs for i in n.input)
    fp32 = onnx.load_from_string(emit_onnx(net.graph, weights=sd, opset=22))
    w32 = {t.name: onnx.numpy_helper.to_array(t) for t in fp32.graph.initializer}
    for t in model.graph.initializer:  # the fp32 file's (folded) weights, rounded as torch does
        if t.data_type == BF16:
            bits = np.frombuffer(t.raw_data, dtype="<u2")
            ref = torch.from_numpy(w32[t.name].copy()).to(torch.bfloat16).view(torch.int16)
            assert np.array_equal(bits, ref.numpy().view(np.uint16).ravel()), t.name


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=64))
def test_rounding_matches_torch(values: list[float]) -> None:
    a = np.array(values, dtype=np.float32)
    t = torch.from_numpy(a)
    assert np.array_equal(to_bf16_bits(a), t.to(torch.bfloat16).view(torch.int16).numpy()
                          .view(np.uint16))
    want = t.clamp(-65504, 65504).half().numpy()  # saturating, never inf
    assert np.array_equal(to_fp16(a), want)


def test_cli_emits_and_verifies_each_dtype(tmp_path: Path) -> None:
    out = tmp_path / "m16.onnx"
    r = run_cli(SMALL, "--emit", "onnx", "--dtype", "fp16", "-o", out, "--verify")
    assert r.returncode == 0, r.stderr
    assert "verify resnet20_cifar: ok" in r.stdout
    assert "tolerance for fp16 ONNX against torch fp32: 1e-02 x max(1, max|torch|)" in r.stdout
    assert "10 mantissa bits" in r.stdout and "onnx: fp16, opset 21" in r.stdout
    assert onnx.load(out).graph.initializer[0].data_type == F16
    r = run_cli(SMALL, "--verify", "--dtype", "bf16")
    assert r.returncode == 0, r.stderr
    assert "tolerance for bf16 ONNX against torch fp32: 5e-02" in r.stdout
    assert "outputs: not compared: onnxruntime here has no bfloat16 kernels" in r.stdout
    assert "onnx checker (full): passed" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--emit", "torch", "--dtype", "fp16"], "--dtype is for --emit onnx and --verify"),
    (["--emit", "onnx", "--no-keep-io-types", "-o", "m.onnx"],
     "--no-keep-io-types goes with --dtype fp16|bf16"),
    (["--emit", "onnx", "--dtype", "bf16", "--opset", "21", "-o", "m.onnx"],
     "bf16 needs opset 22 or later"),
    (["--emit", "onnx", "--dtype", "fp64", "-o", "m.onnx"], "invalid choice: 'fp64'"),
])
def test_misuse_is_one_line_exit_2(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a == "m.onnx" else a for a in args]
    assert cli_main([str(SMALL), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
