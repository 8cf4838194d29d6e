"""The ONNX emitter: spec -> torch -> ONNX -> onnxruntime equality, shapes, determinism, format."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
import yaml
from support import EXAMPLE_SPECS, SPECS, flat_spec, realistic_bn, rel_err, run_cli

import resnet_compiler as rc
from resnet_compiler.emit.onnx import DEFAULT_OPSET, IR_VERSION, build_model, emit_onnx
from resnet_compiler.errors import UsageError
from resnet_compiler.runtime.verify import _onnx_shapes
from resnet_compiler.runtime.weights import init_weights

FULL_SIZE = {"resnet18", "resnet50"}  # kept at 224x224; the heavier nets run at 64x64
SMALL = 64


def compile_for_test(path) -> rc.CompiledNetwork:
    """The spec, with a smaller input for the heavy ImageNet nets to keep the suite fast."""
    data = flat_spec(path)
    if path.stem not in FULL_SIZE and data["input"]["height"] > 2 * SMALL:
        data = copy.deepcopy(data)
        data["input"].update(height=SMALL, width=SMALL)
    return rc.compile(data)


def cpu_session(model: bytes | str) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def torch_module(net: rc.CompiledNetwork, sd: dict[str, np.ndarray]) -> torch.nn.Module:
    """The emitted module with `sd` loaded strictly (on meta first: skips its own random init)."""
    with torch.device("meta"):
        module = net.build_torch()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True,
                           assign=True)
    return module.eval()


@pytest.mark.parametrize("path", SPECS + EXAMPLE_SPECS, ids=lambda p: p.stem)
def test_round_trip_torch_onnx_onnxruntime(path, tmp_path):
    """One dynamic-batch file runs at batch 1 and 3, equals torch, folded or not; the folded file
    passes the full checker and its shape inference equals the graph at every node."""
    net = compile_for_test(path)
    sd = init_weights(net.graph, realistic_bn=True)
    module = torch_module(net, sd)
    folded = tmp_path / "folded.onnx"
    net.to_onnx(folded, weights=sd)
    onnx.checker.check_model(str(folded), full_check=True)
    n_values, mismatches = _onnx_shapes(folded, net.graph, True, None)
    assert not mismatches and n_values == net.graph.number_of_nodes()
    unfolded = emit_onnx(net.graph, sd, fold_bn=False)
    sessions = {"folded": cpu_session(str(folded)), "unfolded": cpu_session(unfolded)}
    c, h, w = net.input_shape
    for batch in (1, 3):
        x = torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            want = module(x)
        outs = {k: s.run(None, {"input": x.numpy()})[0] for k, s in sessions.items()}
        for kind, got in outs.items():
            assert got.shape == (batch, net.graph.graph["num_classes"])
            assert rel_err(want, got) <= 1e-4, (kind, batch)
        assert rel_err(outs["unfolded"], outs["folded"]) <= 1e-4


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d", "resnet18"])
def test_torchvision_weights_through_cli(name, tmp_path):
    """Seeded torchvision weights with non-trivial BN statistics, through `--emit onnx --weights`,
    give torchvision's own eval output."""
    torch.manual_seed(0)
    tv = realistic_bn(getattr(torchvision.models, name)()).eval()
    ckpt, out = tmp_path / "w.pt", tmp_path / "m.onnx"
    torch.save(tv.state_dict(), ckpt)
    r = run_cli(f"spec/{name}.yaml", "--emit", "onnx", "--weights", ckpt, "-o", out)
    assert r.returncode == 0, r.stderr
    session = cpu_session(str(out))
    for batch in (1, 3):
        x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            want = tv(x)
        assert rel_err(want, session.run(None, {"input": x.numpy()})[0]) <= 1e-4


def test_byte_identical_across_runs(tmp_path):
    """Same spec and weights: the same bytes, from two compiles and two CLI runs."""
    spec = "spec/resnet20_cifar.yaml"
    a = emit_onnx(rc.compile(spec).graph)
    b = emit_onnx(rc.compile(spec).graph)
    assert a == b
    for i in (1, 2):
        assert run_cli(spec, "--emit", "onnx", "-o", tmp_path / f"{i}.onnx").returncode == 0
    assert (tmp_path / "1.onnx").read_bytes() == (tmp_path / "2.onnx").read_bytes() == a


def test_model_format_names_and_metadata():
    net = rc.compile("spec/seresnet50.yaml")
    model = build_model(net.graph, fold_bn=False)
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", DEFAULT_OPSET)]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["spec_name"] == "seresnet50"
    assert meta["spec_sha256"] == net.graph.graph["spec_sha256"]
    assert meta["compiler_version"] == rc.__version__
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 224, 224]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 1000]
    inits = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    sd_keys = {k for k in init_weights(net.graph) if not k.endswith("num_batches_tracked")}
    assert inits == sd_keys  # unfolded: exactly the state_dict's float tensors
    by_name = {n.name: n for n in model.graph.node}
    assert by_name["layer1.0.conv1"].op_type == "Conv"
    assert by_name["layer1.0.bn1"].op_type == "BatchNormalization"
    assert [by_name[f"layer1.0.se.{s}"].op_type for s in ("pooled", "fc1", "act", "fc2", "gate")] \
        == ["GlobalAveragePool", "Conv", "Relu", "Conv", "Sigmoid"]
    assert by_name["layer1.0.se.gated"].op_type == "Mul"
    assert by_name["fc"].op_type == "Gemm"
    assert by_name["layer1.0.add"].input[1] == "layer1.0.downsample.1"  # branch, then shortcut
    folded = build_model(net.graph)
    assert not [n for n in folded.graph.node if n.op_type == "BatchNormalization"]
    assert "layer1.0.conv1.bias" in {t.name for t in folded.graph.initializer}


def test_fixed_batch_and_opset(tmp_path):
    net = rc.compile("spec/resnet20_cifar.yaml")
    model = onnx.load_from_string(emit_onnx(net.graph, batch=4, opset=17))
    assert model.opset_import[0].version == 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    onnx.checker.check_model(model, full_check=True)
    out = cpu_session(model.SerializeToString()).run(None, {"input": np.zeros((4, 3, 32, 32),
                                                                              np.float32)})[0]
    assert out.shape == (4, 10)
    with pytest.raises(UsageError, match="supported opsets"):
        emit_onnx(net.graph, opset=7)
    r = run_cli("spec/resnet20_cifar.yaml", "--emit", "onnx", "--opset", "99", "-o",
                tmp_path / "m.onnx")
    assert r.returncode == 2 and "opset" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_dropout_and_max_pool_head(tmp_path):
    """Dropout disappears at inference; a max-pooled head maps to GlobalMaxPool."""
    data = yaml.safe_load(open("spec/resnet20_cifar.yaml").read())
    data["head"] = {"pool": "max", "dropout": 0.5}
    net = rc.compile(data)
    sd = init_weights(net.graph, realistic_bn=True)
    model = onnx.load_from_string(emit_onnx(net.graph, sd))
    ops = [n.op_type for n in model.graph.node]
    assert "GlobalMaxPool" in ops and "Dropout" not in ops
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        want = torch_module(net, sd)(x)
    assert rel_err(want, cpu_session(model.SerializeToString()).run(None, {"input": x.numpy()})[0]) <= 1e-4
