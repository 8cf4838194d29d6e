"""GroupNorm, FrozenBatchNorm and weight-standardised convolution: each against its real peer
(torch.nn.GroupNorm and timm's GroupNormAct, torchvision.ops.FrozenBatchNorm2d, timm's StdConv2d
and BiT's PreActBottleneck), and the ONNX lowering against torch under onnxruntime for every
supported opset and a dynamic batch."""

from __future__ import annotations

import copy
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm.layers
import torch
import torchvision
from support import one_line, rel_err
from timm.models.resnetv2 import DownsampleConv, PreActBottleneck

import resnet_compiler as rc
from resnet_compiler.ops import REGISTRY, InitOptions
from resnet_compiler.runtime.verify import verify
from resnet_compiler.runtime.weights import init_weights

OPSETS = range(13, 22)
TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """The same random inputs and module initialisations on every run."""
    torch.manual_seed(0)


def spec(*stem: dict[str, Any], channels: int = 16, side: int = 12, **extra: Any) -> dict[str, Any]:
    """A small network: a 3x3 conv to `channels`, then the ops under test, then one basic block."""
    return {"name": "t", "input": {"channels": 3, "height": side, "width": side}, "num_classes": 5,
            "stem": [{"op": "conv", "channels": channels, "kernel": 3}, *stem],
            "stages": [{"block": "basic", "depth": 1, "channels": 8}], **extra}


def loaded(net: rc.CompiledNetwork, sd: dict[str, np.ndarray]) -> torch.nn.Module:
    model = net.build_torch()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=True)
    return model.eval()


def onnx_outputs(net: rc.CompiledNetwork, sd: dict[str, np.ndarray], x: np.ndarray,
                 path: Path, **kwargs: Any) -> np.ndarray:
    net.to_onnx(path, weights=sd, **kwargs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def op_types(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def assert_onnx_agrees(net: rc.CompiledNetwork, tmp_path: Path, opsets: range = OPSETS,
                       fold_bn: bool = True) -> None:
    """Every opset, one file run at two batch sizes (the batch is dynamic)."""
    sd = init_weights(net.graph, realistic_bn=True)
    model = loaded(net, sd)
    c, h, w = net.graph.graph["input_shape"]
    xs = [torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(n)) for n in (1, 3)]
    with torch.no_grad():
        expected = [model(x).numpy() for x in xs]
    for opset in opsets:
        path = tmp_path / f"m{opset}.onnx"
        net.to_onnx(path, weights=sd, opset=opset, fold_bn=fold_bn)
        onnx.checker.check_model(str(path), full_check=True)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for x, y in zip(xs, expected, strict=True):
            got = session.run(None, {"input": x.numpy()})[0]
            assert got.shape == y.shape
            assert rel_err(y, got) <= TOLERANCE, (opset, x.shape[0], rel_err(y, got))


def ruff_clean(source: str, tmp_path: Path) -> None:
    path = tmp_path / "model.py"
    path.write_text(source)
    ruff = Path(sys.executable).with_name("ruff")
    r = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", "--select",
                        "E,F,W,I,B,UP,SIM,RUF", "--line-length", "100", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import torch", "from torch import nn"]


# ---- gn ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("op", "groups"), [
    ({"op": "gn"}, 32),
    ({"op": "gn", "groups": 8, "eps": 1e-3}, 8),
    ({"op": "gn", "channels_per_group": 16}, 4),
    ({"op": "gn", "groups": 1, "affine": False}, 1),
    ({"op": "gn", "channels_per_group": 1}, 64),
])
def test_gn_is_torch_group_norm(op: dict[str, Any], groups: int) -> None:
    net = rc.compile(spec({**op, "name": "norm"}, channels=64))
    sd = init_weights(net.graph, realistic_bn=True)
    model = loaded(net, sd)
    affine = op.get("affine", True)
    peer = torch.nn.GroupNorm(groups, 64, eps=op.get("eps", 1e-5), affine=affine)
    assert isinstance(model.norm, torch.nn.GroupNorm)
    assert (model.norm.num_groups, model.norm.eps, model.norm.affine) == (peer.num_groups, peer.eps,
                                                                          affine)
    assert model.norm.state_dict().keys() == peer.state_dict().keys()
    peer.load_state_dict(model.norm.state_dict(), strict=True)
    # timm's GroupNormAct (as BiT uses it) takes channels_per_group as `group_size`
    timm_peer = timm.layers.GroupNormAct(64, num_groups=groups, eps=op.get("eps", 1e-5),
                                         affine=affine, apply_act=False,
                                         group_size=op.get("channels_per_group"))
    timm_peer.load_state_dict(model.norm.state_dict(), strict=True)
    x = torch.randn(2, 64, 5, 7)
    with torch.no_grad():
        y = model.norm(x)
        torch.testing.assert_close(y, peer(x), rtol=0, atol=0)
        torch.testing.assert_close(y, timm_peer(x), rtol=1e-5, atol=1e-5)
    data = net.graph.nodes["norm"]
    assert data["params"] == (128 if affine else 0)
    assert data["macs"] == 0
    assert data["groups"] == groups
    assert REGISTRY["gn"].role == "norm" and not REGISTRY["gn"].folds_into_conv


@pytest.mark.parametrize("op", [
    {"op": "gn", "groups": 4},
    {"op": "gn", "channels_per_group": 2, "eps": 1e-2},
    {"op": "gn", "groups": 16, "affine": False},
])
def test_gn_onnx_matches_torch_on_every_opset(op: dict[str, Any], tmp_path: Path) -> None:
    net = rc.compile(spec(op, {"op": "relu"}))
    assert_onnx_agrees(net, tmp_path)
    types = op_types(tmp_path / "m21.onnx")
    assert "InstanceNormalization" in types and "GroupNormalization" not in types


def test_gn_does_not_fold_into_the_conv(tmp_path: Path) -> None:
    net = rc.compile(spec({"op": "gn", "groups": 4, "name": "norm"}))
    path = tmp_path / "m.onnx"
    net.to_onnx(path, weights=init_weights(net.graph, realistic_bn=True))
    model = onnx.load(str(path))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs[0].output == ["conv1"]
    assert "norm.weight" in {t.name for t in model.graph.initializer}


def test_gn_spec_errors() -> None:
    with pytest.raises(rc.SpecError, match="either groups or channels_per_group"):
        rc.compile(spec({"op": "gn", "groups": 4, "channels_per_group": 4}))
    with pytest.raises(rc.SpecError) as e:
        rc.compile(spec({"op": "gn", "groups": 5}, channels=16))
    assert len(str(e.value).splitlines()) == 1
    assert "groups=5" in str(e.value) and "(16)" in str(e.value)
    with pytest.raises(rc.SpecError) as e:
        rc.compile(spec({"op": "gn", "channels_per_group": 3}, channels=16))
    assert "channels_per_group=3" in str(e.value) and "(16)" in str(e.value)
    with pytest.raises(rc.SpecError, match="groups=32"):  # the default does not fit 16 channels
        rc.compile(spec({"op": "gn"}, channels=16))
    with pytest.raises(rc.SpecError):
        rc.compile(spec({"op": "gn", "groups": 0}))
    with pytest.raises(rc.SpecError):
        rc.compile(spec({"op": "gn", "eps": 0.0}))


def test_gn_init_honours_options() -> None:
    op = REGISTRY["gn"]
    tensors = {"weight": (8,), "bias": (8,)}
    rng = np.random.default_rng(0)
    plain = op.init({}, tensors, rng, InitOptions())
    assert (plain["weight"] == 1).all() and (plain["bias"] == 0).all()
    assert (op.init({}, tensors, rng, InitOptions(zero_gamma=True))["weight"] == 0).all()
    real = op.init({}, tensors, rng, InitOptions(realistic_norm=True))
    assert real["weight"].std() > 0 and real["bias"].std() > 0
    assert all(v.dtype == np.float32 for v in real.values())
    assert op.init({}, {}, rng, InitOptions(realistic_norm=True)) == {}


# ---- frozen_bn ---------------------------------------------------------------------------------

def frozen_net(**op: Any) -> rc.CompiledNetwork:
    return rc.compile(spec({"op": "frozen_bn", "name": "norm", **op}))


def test_frozen_bn_equals_torchvision(tmp_path: Path) -> None:
    net = frozen_net(eps=1e-3)
    sd = init_weights(net.graph, realistic_bn=True)
    model = loaded(net, sd)
    peer = torchvision.ops.FrozenBatchNorm2d(16, eps=1e-3)
    peer.load_state_dict(model.norm.state_dict(), strict=True)
    assert model.norm.state_dict().keys() == peer.state_dict().keys()
    assert model.norm.eps == peer.eps
    x = torch.randn(3, 16, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.norm(x), peer(x), rtol=1e-6, atol=1e-6)
    # and the reverse: torchvision's buffers load strictly into the generated module
    for buf in peer.buffers():
        buf.copy_(torch.rand_like(buf) + 0.5)
    model.norm.load_state_dict(peer.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model.norm(x), peer(x), rtol=1e-6, atol=1e-6)


def test_frozen_bn_has_no_parameters_and_never_trains() -> None:
    net = frozen_net()
    model = loaded(net, init_weights(net.graph, realistic_bn=True))
    norm = model.norm
    assert list(norm.parameters()) == []
    assert {name for name, _ in norm.named_buffers()} == {"weight", "bias", "running_mean",
                                                          "running_var"}
    assert net.graph.nodes["norm"]["params"] == 0
    assert set(net.graph.nodes["norm"]["tensors"]) == {"weight", "bias", "running_mean",
                                                       "running_var"}
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    model.train()
    x = torch.randn(4, 3, 12, 12) * 3 + 1
    with torch.no_grad():
        train_out = norm(model.conv1(x))
    model.eval()
    with torch.no_grad():
        eval_out = norm(model.conv1(x))
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)  # no batch statistics
    for k, v in norm.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    # a whole training step leaves the frozen buffers alone too
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).sum().backward()
    opt.step()
    for k, v in norm.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_frozen_bn_loads_a_batch_norm_checkpoint() -> None:
    """A BatchNorm2d state_dict carries num_batches_tracked; the frozen module ignores it."""
    net = frozen_net()
    model = net.build_torch().eval()
    bn = torch.nn.BatchNorm2d(16)
    with torch.no_grad():
        for buf in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            buf.copy_(torch.rand(16) + 0.5)
    model.norm.load_state_dict(bn.state_dict(), strict=True)
    bn.eval()
    x = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(model.norm(x), bn(x), rtol=1e-5, atol=1e-5)


def test_frozen_bn_folds_into_the_conv_like_bn(tmp_path: Path) -> None:
    net = rc.compile(spec({"op": "frozen_bn", "name": "norm"}, {"op": "relu"},
                          {"op": "frozen_bn", "name": "after_relu"}))
    assert_onnx_agrees(net, tmp_path)
    # folded after the conv; a BatchNormalization where nothing precedes it to fold into
    types = op_types(tmp_path / "m21.onnx")
    assert types.count("BatchNormalization") == 1
    assert_onnx_agrees(net, tmp_path, opsets=range(13, 14), fold_bn=False)
    types = op_types(tmp_path / "m13.onnx")
    assert types.count("BatchNormalization") == 2 + 3  # and the basic block's three (one projects)
    # the folded weights equal bn's fold of the same tensors
    bn_net = rc.compile(spec({"op": "bn", "name": "norm"}, {"op": "relu"},
                             {"op": "frozen_bn", "name": "after_relu"}))
    sd = init_weights(net.graph, realistic_bn=True)
    bn_sd = {**sd, "norm.num_batches_tracked": np.array(0, dtype=np.int64)}
    frozen = onnx.load(str(_write(net, sd, tmp_path / "f.onnx")))
    batch = onnx.load(str(_write(bn_net, bn_sd, tmp_path / "b.onnx")))
    for name in ("conv1.weight", "conv1.bias"):
        a = next(t for t in frozen.graph.initializer if t.name == name)
        b = next(t for t in batch.graph.initializer if t.name == name)
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))


def _write(net: rc.CompiledNetwork, sd: dict[str, np.ndarray], path: Path) -> Path:
    net.to_onnx(path, weights=sd)
    return path


def test_frozen_bn_init_matches_bn_without_the_counter() -> None:
    tensors = dict.fromkeys(("weight", "bias", "running_mean", "running_var"), (6,))
    for options in (InitOptions(), InitOptions(realistic_norm=True), InitOptions(zero_gamma=True)):
        frozen = REGISTRY["frozen_bn"].init({}, tensors, np.random.default_rng(1), options)
        bn = REGISTRY["bn"].init({}, {**tensors, "num_batches_tracked": ()},
                                 np.random.default_rng(1), options)
        assert frozen.keys() == tensors.keys()
        for k, v in frozen.items():
            np.testing.assert_array_equal(v, bn[k])


# ---- std_conv ----------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [
    {"channels": 16, "kernel": 3},
    {"channels": 24, "kernel": 3, "stride": 2, "eps": 1e-8, "bias": True},
    {"channels": 16, "kernel": 3, "groups": 4, "dilation": 2},
    {"channels": 8, "kernel": 1, "padding": 0, "eps": 1e-3},
])
def test_std_conv_equals_timm(op: dict[str, Any]) -> None:
    net = rc.compile(spec({"op": "std_conv", "name": "ws", **op}))
    model = loaded(net, init_weights(net.graph, realistic_bn=True))
    a = net.graph.nodes["ws"]
    peer = timm.layers.StdConv2d(16, op["channels"], op["kernel"], stride=a["stride"],
                                 padding=a["padding"], dilation=a["dilation"], groups=a["groups"],
                                 bias=a["bias"], eps=op.get("eps", 1e-6))
    assert isinstance(model.ws, torch.nn.Conv2d) and model.ws.eps == peer.eps
    assert model.ws.state_dict().keys() == peer.state_dict().keys()
    with torch.no_grad():
        for p in peer.parameters():  # an offset and a scale that standardisation must remove
            p.copy_(torch.randn_like(p) * 0.3 + 0.2)
    model.ws.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(model.ws(x), peer(x), rtol=1e-5, atol=1e-5)
    # the same tensors, parameters and MACs as a plain conv
    plain = rc.compile(spec({"op": "conv", "name": "ws",
                             **{k: v for k, v in op.items() if k != "eps"}}))
    p = plain.graph.nodes["ws"]
    assert (a["tensors"], a["params"], a["macs"], a["shape"]) == (p["tensors"], p["params"],
                                                                 p["macs"], p["shape"])
    assert REGISTRY["std_conv"].role == "conv"


def test_std_conv_trains_through_the_standardisation() -> None:
    """The gradient flows through the mean and variance (the weight is standardised in
    forward, not once at construction), as in timm."""
    net = rc.compile(spec({"op": "std_conv", "name": "ws", "channels": 8, "kernel": 3}))
    model = net.build_torch().train()
    peer = timm.layers.StdConv2d(16, 8, 3, padding=1)
    peer.load_state_dict(model.ws.state_dict(), strict=True)
    x = torch.randn(2, 16, 6, 6)
    model.ws(x).square().sum().backward()
    peer(x).square().sum().backward()
    assert model.ws.weight.grad.abs().max() > 0
    assert rel_err(peer.weight.grad, model.ws.weight.grad) <= 1e-5


@pytest.mark.parametrize("stem", [
    [{"op": "std_conv", "channels": 16, "kernel": 3, "stride": 2}, {"op": "bn"}, {"op": "relu"}],
    [{"op": "std_conv", "channels": 16, "kernel": 3, "eps": 1e-8, "bias": True},
     {"op": "frozen_bn"}],
    [{"op": "std_conv", "channels": 32, "kernel": 3, "groups": 2}, {"op": "gn"}],
])
def test_std_conv_onnx_is_a_plain_conv_and_matches_torch(stem: list[dict[str, Any]],
                                                           tmp_path: Path) -> None:
    net = rc.compile(spec(*stem))
    assert_onnx_agrees(net, tmp_path)
    assert_onnx_agrees(net, tmp_path, opsets=range(13, 14), fold_bn=False)
    model = onnx.load(str(tmp_path / "m21.onnx"))
    first = model.graph.node[1]
    assert first.op_type == "Conv" and first.name == "std_conv1"
    folds = stem[1]["op"] in ("bn", "frozen_bn")
    assert first.output == (["bn1"] if stem[1]["op"] == "bn" else
                            ["frozen_bn1"] if folds else ["std_conv1"])


def test_std_conv_in_a_block_and_spec_errors() -> None:
    with pytest.raises(rc.SpecError, match="eps"):
        rc.compile(spec({"op": "std_conv", "channels": 8, "kernel": 3, "eps": 0.0}))
    with pytest.raises(rc.SpecError, match="momentum"):
        rc.compile(spec({"op": "std_conv", "channels": 8, "kernel": 3, "momentum": 0.1}))
    with pytest.raises(rc.SpecError, match="groups=3"):
        rc.compile(spec({"op": "std_conv", "channels": 8, "kernel": 3, "groups": 3}))


# ---- all three in a BiT block ------------------------------------------------------------------

def bit_spec(eps: float = 1e-8) -> dict[str, Any]:
    """A BiT ResNet-V2 stage in the spec language: pre-activation bottlenecks of GroupNorm(32),
    ReLU and weight-standardised convs, the projection taken from the first activation."""
    ws = {"op": "std_conv", "eps": eps}
    return {
        "name": "bit", "input": {"channels": 64, "height": 8, "width": 8}, "num_classes": 5,
        "blocks": {"bit": {
            "class_name": "BitBlock", "params": {"expansion": 4},
            "vars": {"width": "channels"},
            "out_channels": "channels * expansion", "shortcut": "bit_proj",
            "projection_from": "act1",
            "branch": [
                {"op": "gn", "name": "norm1"}, {"op": "relu", "name": "act1"},
                {**ws, "name": "conv1", "channels": "width", "kernel": 1},
                {"op": "gn", "name": "norm2"}, {"op": "relu", "name": "act2"},
                {**ws, "name": "conv2", "channels": "width", "kernel": 3, "stride": "stride"},
                {"op": "gn", "name": "norm3", "channels_per_group": "width // 32"},
                {"op": "relu", "name": "act3"},
                {**ws, "name": "conv3", "channels": "out_channels", "kernel": 1}]}},
        "shortcuts": {"bit_proj": [{**ws, "channels": "out_channels", "kernel": 1,
                                    "stride": "stride"}]},
        "stages": [{"block": "bit", "depth": 2, "channels": 64, "stride": 2}],
    }


def test_bit_stage_equals_timm_preact_bottlenecks(tmp_path: Path) -> None:
    net = rc.compile(bit_spec())
    ruff_clean(net.to_torch_source(), tmp_path)
    model = net.build_torch().eval()
    conv = partial(timm.layers.StdConv2d, eps=1e-8)
    norm = partial(timm.layers.GroupNormAct, num_groups=32)
    peer = torch.nn.Sequential(
        PreActBottleneck(64, 256, stride=2, conv_layer=conv, norm_layer=norm,
                         proj_layer=DownsampleConv),
        PreActBottleneck(256, 256, conv_layer=conv, norm_layer=norm)).eval()
    with torch.no_grad():
        for p in peer.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + 0.5)
    sd = {k.replace("downsample.conv.", "downsample.0."): v for k, v in peer.state_dict().items()}
    model.layer1.load_state_dict(sd, strict=True)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        expected = peer(x)
        assert rel_err(expected, model.layer1(x)) <= 1e-5
    # and ONNX with these weights, dynamic batch, every opset
    full = {k: v.numpy() for k, v in model.state_dict().items()}
    for opset in OPSETS:
        for n in (1, 3):
            xn = torch.randn(n, 64, 8, 8)
            with torch.no_grad():
                y = model(xn).numpy()
            got = onnx_outputs(net, full, xn.numpy(), tmp_path / "bit.onnx", opset=opset)
            assert rel_err(y, got) <= TOLERANCE, (opset, n)
    # verify: torch against onnxruntime, and ONNX shape inference against the graph's shapes
    report = verify(net, weights=full)
    assert report.checker_error is None and report.shape_mismatches == []
    assert report.values_checked == net.graph.number_of_nodes()


def test_generated_code_for_all_three_is_ruff_clean(tmp_path: Path) -> None:
    data = copy.deepcopy(bit_spec(eps=1e-6))
    data["stem"] = [{"op": "std_conv", "channels": 64, "kernel": 3, "eps": 1e-5},
                    {"op": "frozen_bn", "eps": 1e-3}, {"op": "gn", "groups": 8, "affine": False},
                    {"op": "gn", "channels_per_group": 16, "eps": 1e-4}]
    data["input"]["channels"] = 3
    net = rc.compile(data)
    source = net.to_torch_source()
    ruff_clean(source, tmp_path)
    assert source.count("class FrozenBatchNorm2d(nn.Module)") == 1
    assert source.count("class StdConv2d(nn.Conv2d)") == 1
    assert "nn.GroupNorm(4, 64, eps=0.0001)" in source
    assert "nn.GroupNorm(8, 64, affine=False)" in source
    assert "width // (width // 32)" in source
    assert "FrozenBatchNorm2d(64, eps=0.001)" in source
    assert "StdConv2d(3, 64, kernel_size=3, padding=1, bias=False, eps=1e-05)" in one_line(source)
    assert_onnx_agrees(net, tmp_path, opsets=range(21, 22))
