"""Channel attention (the se and eca modules, se with timm's SEModule options), blur pooling
and stochastic depth, each against its timm peer (same weights, strict state_dict loads) and its
ONNX lowering against torch under onnxruntime at opsets 13 to 21 with a dynamic batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from support import rel_err
from timm.layers import BlurPool2d, EcaModule, SEModule
from torch import nn

import resnet_compiler as rc
from resnet_compiler.runtime.weights import init_weights

OPSETS = (13, 17, 21)
TOLERANCE = 1e-4


def stem_spec(*ops: dict[str, Any], channels: int = 3, side: int = 16,
              conv: bool = True) -> dict[str, Any]:
    """A tiny net whose stem is (conv 8 ->) the ops under test."""
    stem = [{"op": "conv", "channels": 8, "kernel": 3}] if conv else []
    return {"name": "t", "input": {"channels": channels, "height": side, "width": side},
            "num_classes": 5, "stem": [*stem, *ops],
            "stages": [{"block": "basic", "depth": 1, "channels": 8}]}


def block_spec(*ops: dict[str, Any], conv_stride: int | str = "stride", **extra: Any) -> dict[str, Any]:
    """A net of a custom block with the ops under test in its branch, over stages whose widths
    give the channel-dependent rules (the eca kernel) several values."""
    block = {"class_name": "TestBlock", "params": {"dp": 0.0},
             "branch": [{"op": "conv", "name": "conv1", "channels": "channels", "kernel": 3,
                         "stride": conv_stride},
                        {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "act1"}, *ops,
                        {"op": "conv", "name": "conv2", "channels": "channels", "kernel": 1},
                        {"op": "bn", "name": "bn2"}],
             "post": [{"op": "relu", "name": "act2"}]}
    return {"name": "t", "input": {"channels": 3, "height": 32, "width": 32}, "num_classes": 5,
            "blocks": {"test": block},
            "stem": [{"op": "conv", "channels": 16, "kernel": 3}, {"op": "bn"}, {"op": "relu"}],
            "stages": [{"block": "test", "depth": 2, "channels": 16},
                       {"block": "test", "depth": 2, "channels": 128, "stride": 2},
                       {"block": "test", "depth": 1, "channels": 520, "stride": 2}], **extra}


def build(net: rc.CompiledNetwork) -> tuple[nn.Module, dict[str, np.ndarray]]:
    """The generated module in eval mode with the compiler's seeded, realistic weights."""
    sd = init_weights(net.graph, realistic_bn=True)
    model = net.build_torch().eval()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, strict=True)
    return model, sd


def onnx_session(net: rc.CompiledNetwork, sd: dict[str, np.ndarray], opset: int, path: Path,
                 outputs: tuple[str, ...] = ()) -> ort.InferenceSession:
    """An onnxruntime CPU session of the net's ONNX file, checked in full; `outputs` are graph
    values exposed beside the logits."""
    net.to_onnx(path, weights=sd, opset=opset)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    for name in outputs:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def assert_onnx_matches_torch(net: rc.CompiledNetwork, tmp_path: Path,
                              opsets: tuple[int, ...] = OPSETS) -> None:
    model, sd = build(net)
    for opset in opsets:
        session = onnx_session(net, sd, opset, tmp_path / f"m{opset}.onnx")
        for batch in (1, 3):  # one file, two batch sizes: the batch is dynamic
            x = torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                expected = model(x).numpy()
            got = session.run(None, {"input": x.numpy()})[0]
            assert got.shape == expected.shape
            assert rel_err(expected, got) <= TOLERANCE, (opset, batch)


def node_of(net: rc.CompiledNetwork, kind: str) -> str:
    (node,) = [n for n, d in net.graph.nodes(data=True) if d["op"] == kind]
    return node


def ruff_clean(source: str, path: Path) -> None:
    path.write_text(source)
    ruff = Path(sys.executable).with_name("ruff")
    r = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", "--select",
                        "E,F,W,I,B,UP,SIM,RUF", "--line-length", "100", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def spec_error(spec: dict[str, Any]) -> str:
    with pytest.raises(rc.SpecError) as e:
        rc.compile(spec)
    message = str(e.value)
    assert len(message.splitlines()) == 1, message
    return message


# ---- se: the built-in module, with timm's SEModule options ---------------------------------------

# timm's act layers for the se module's `act` names
TIMM_ACTS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU,
                                         "hardswish": nn.Hardswish, "mish": nn.Mish,
                                         "relu6": nn.ReLU6, "tanh": nn.Tanh}


def timm_se(channels: int, op: dict[str, Any]) -> SEModule:
    """timm's SEModule configured as the se call `op` asks."""
    kwargs: dict[str, Any] = {"rd_divisor": op.get("divisor", 8), "bias": op.get("bias", True),
                              "act_layer": TIMM_ACTS[op.get("act", "relu")],
                              "gate_layer": op.get("gate", "sigmoid")}
    if "channels" in op:
        kwargs["rd_channels"] = op["channels"]
    elif "ratio" in op:
        kwargs["rd_ratio"] = op["ratio"]
    else:
        kwargs["rd_ratio"] = 1.0 / op.get("reduction", 16)
    return SEModule(channels, **kwargs).eval()


def se_tensors(net: rc.CompiledNetwork, prefix: str) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of the module called `prefix`, keyed as inside it."""
    return {f"{n.removeprefix(prefix + '.')}.{k}": tuple(v)
            for n, d in net.graph.nodes(data=True) if n.startswith(prefix + ".")
            for k, v in d["tensors"].items()}


@pytest.mark.parametrize("channels", [8, 16, 24, 40, 64, 100, 256, 2048])
@pytest.mark.parametrize("width", [{}, {"reduction": 4}, {"ratio": 0.25}, {"ratio": 0.3},
                                   {"ratio": 1 / 16, "divisor": 4}, {"ratio": 0.5, "divisor": 1},
                                   {"channels": 6}])
def test_se_width_is_timms(channels: int, width: dict[str, Any]) -> None:
    net = rc.compile(stem_spec({"op": "se", **width}, channels=channels, conv=False))
    reference = timm_se(channels, width)
    assert se_tensors(net, "se1") == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    params = sum(d["params"] for n, d in net.graph.nodes(data=True) if n.startswith("se1."))
    assert params == sum(p.numel() for p in reference.parameters())


def test_se_defaults_spelled_out_give_the_same_class() -> None:
    """act, gate and bias at their defaults leave no trace in the code: one SEModule class with
    no act, gate or bias argument, and the same nodes."""
    plain = rc.compile(stem_spec({"op": "se"}))
    spelled = rc.compile(stem_spec({"op": "se", "act": "relu", "gate": "sigmoid", "bias": True}))
    assert plain.to_torch_source().split('"""', 2)[2] == spelled.to_torch_source().split('"""', 2)[2]
    assert dict(plain.graph.nodes(data=True)) == dict(spelled.graph.nodes(data=True))
    assert "self.se1 = SEModule(8)" in plain.to_torch_source()
    assert "act:" not in plain.to_torch_source()


@pytest.mark.parametrize("op", [{}, {"reduction": 4}, {"ratio": 0.25}, {"ratio": 0.3, "divisor": 4},
                                {"channels": 6}])
def test_se_generated_module_equals_timm(op: dict[str, Any]) -> None:
    net = rc.compile(stem_spec({"op": "se", **op}, channels=40, conv=False, side=8))
    model, _ = build(net)
    reference = timm_se(40, op)
    reference.load_state_dict(model.se1.state_dict(), strict=True)
    x = torch.randn(2, 40, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.se1(x), reference(x), rtol=1e-6, atol=1e-6)


def test_se_width_by_ratio_inside_a_block_follows_the_channels(tmp_path: Path) -> None:
    net = rc.compile(block_spec({"op": "se", "name": "se", "ratio": 0.3}))
    assert "self.se = SEModule(channels, ratio=0.3)" in net.to_torch_source()
    model, _ = build(net)
    for node, data in net.graph.nodes(data=True):
        if node.endswith(".se.fc1"):
            assert model.get_submodule(node).out_channels == data["out_channels"]
            assert model.get_submodule(node).in_channels == data["in_channels"]
    ruff_clean(net.to_torch_source(), tmp_path / "model.py")
    assert_onnx_matches_torch(net, tmp_path, opsets=(21,))


SE_OPTIONS = [{"act": "silu", "gate": "hard_sigmoid"},
              {"reduction": 4, "bias": False, "act": "gelu"},
              {"ratio": 0.25, "act": "hardswish", "gate": "hard_sigmoid", "bias": False},
              {"channels": 6, "act": "mish"},
              {"ratio": 0.5, "act": "relu6", "divisor": 4},
              {"act": "tanh", "bias": False}]


@pytest.mark.parametrize("op", SE_OPTIONS, ids=lambda op: "-".join(f"{k}={v}" for k, v in op.items()))
def test_se_options_in_torch_and_onnx_equal_timm(op: dict[str, Any], tmp_path: Path) -> None:
    """The generated SEModule built with each option loads timm's SEModule's weights strictly and
    computes the same, and so does the ONNX lowering (the se output exposed as an extra ONNX
    output); the file is ruff-clean."""
    net = rc.compile(stem_spec({"op": "se", **op}, channels=40, conv=False, side=8))
    ruff_clean(net.to_torch_source(), tmp_path / "model.py")
    model, sd = build(net)
    reference = timm_se(40, op)
    reference.load_state_dict(model.se1.state_dict(), strict=True)
    x = torch.randn(2, 40, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.se1(x), reference(x), rtol=1e-6, atol=1e-6)
    out = node_of(net, "mul")
    for opset in OPSETS:
        session = onnx_session(net, sd, opset, tmp_path / f"m{opset}.onnx", outputs=(out,))
        for batch in (1, 3):
            x = torch.randn(batch, 40, 8, 8, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                expected = reference(x).numpy()
            (got,) = session.run([out], {"input": x.numpy()})
            assert rel_err(expected, got) <= TOLERANCE, (opset, batch)


def test_se_options_fix_the_class_and_two_choices_give_two_classes() -> None:
    """An act, gate or bias other than the default is a class of its own, as timm builds
    SEModule with the layers it is given; the default keeps the plain class."""
    net = rc.compile(stem_spec({"op": "se"}, {"op": "se", "act": "silu", "bias": False}))
    source = net.to_torch_source()
    assert "class SEModule(nn.Module)" in source and "class SEModule2(nn.Module)" in source
    assert "self.se1 = SEModule(8)" in source and "self.se2 = SEModule2(8)" in source
    assert "nn.SiLU" in source.split("class SEModule2")[1].split("class ")[0]


@pytest.mark.parametrize(("op", "words"), [
    ({"channels": 8, "ratio": 0.25}, "se1: give channels or ratio, not both"),
    ({"ratio": 1.5}, "se1: ratio must be from 0 to 1"),
    ({"gate": "tanhh"}, "stem[1].gate: gate: tanhh does not fit module 'se': its act.fn must be"),
    ({"act": "swish"}, "stem[1].act: act: swish does not fit module 'se': its act.fn must be 'relu'"),
    ({"bias": "no"}, "stem[1].bias: bias: module 'se' fixes its class by this param, so it takes"),
    ({"act": 3}, "stem[1].act"),
    ({"reductio": 3}, "module 'se' has no param 'reductio'"),
])
def test_se_invalid_options_are_one_line_spec_errors(op: dict[str, Any], words: str) -> None:
    assert words in spec_error(stem_spec({"op": "se", **op}))


def test_se_options_survive_a_round_trip_through_the_spec_model() -> None:
    for op in ({"ratio": 0.25}, {"channels": 6}, {"act": "gelu", "bias": False}):
        net = rc.compile(stem_spec({"op": "se", **op}))
        again = rc.compile(net.spec)
        assert again.graph.graph["spec_sha256"] == net.graph.graph["spec_sha256"]
        assert dict(again.graph.nodes(data=True)) == dict(net.graph.nodes(data=True))


# ---- eca: the built-in module over the channel_conv primitive ------------------------------------

ECA_CHANNELS = [1, 2, 3, 8, 15, 16, 31, 32, 63, 64, 100, 128, 255, 256, 512, 520, 1000, 1024,
                2048, 4096]


@pytest.mark.parametrize(("gamma", "beta"), [(2, 1), (1, 1), (3, 2), (2, 0.5), (1.5, -4)])
def test_eca_kernel_rule_is_timms(gamma: float, beta: float) -> None:
    """The compiler's kernel and the generated class's own computation agree with timm."""
    rule = {} if (gamma, beta) == (2, 1) else {"gamma": float(gamma), "beta": float(beta)}
    cls = rc.compile(stem_spec({"op": "eca", "gamma": 2.5, "beta": 0.5})).torch_namespace().EcaModule
    for c in ECA_CHANNELS:
        net = rc.compile(stem_spec({"op": "eca", **rule}, channels=c, conv=False, side=4))
        want = EcaModule(channels=c, gamma=gamma, beta=beta).conv.kernel_size[0]
        assert net.graph.nodes["eca1.conv"]["kernel"] == want, c
        assert cls(c, gamma=float(gamma), beta=float(beta)).conv.kernel_size[0] == want, c


@pytest.mark.parametrize("op", [{}, {"kernel": 5}, {"kernel": 1}, {"gamma": 1.0}])
def test_eca_loads_timm_weights_strictly_and_computes_the_same(op: dict[str, Any]) -> None:
    net = rc.compile(stem_spec({"op": "eca", **op}, channels=64, conv=False, side=8))
    model, _ = build(net)
    if "kernel" in op:
        reference = EcaModule(kernel_size=op["kernel"])
    else:
        reference = EcaModule(channels=64, gamma=op.get("gamma", 2))
    reference.eval()
    assert se_tensors(net, "eca1") == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    model.eca1.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(3, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.eca1(x), reference(x), rtol=1e-6, atol=1e-6)
    assert net.graph.nodes["eca1.conv"]["params"] == sum(p.numel() for p in reference.parameters())


def test_eca_counts() -> None:
    net = rc.compile(stem_spec({"op": "eca"}, channels=256, conv=False, side=4))
    conv = net.graph.nodes["eca1.conv"]
    assert (conv["kernel"], conv["params"], conv["macs"]) == (5, 5, 256 * 5)
    assert net.graph.nodes["eca1.gated"]["shape"] == (256, 4, 4)
    assert sum(d["macs"] for n, d in net.graph.nodes(data=True) if n.startswith("eca1.")) == 256 * 5


def test_eca_in_a_block_follows_each_stages_channels(tmp_path: Path) -> None:
    net = rc.compile(block_spec({"op": "eca", "name": "eca"}))
    kernels = {n: d["kernel"] for n, d in net.graph.nodes(data=True) if d["op"] == "channel_conv"}
    assert set(kernels.values()) == {3, 5}  # 16 and 128 channels: 3; 520: 5
    model, _ = build(net)
    for node, k in kernels.items():
        assert model.get_submodule(node).kernel_size == (k,)
    ruff_clean(net.to_torch_source(), tmp_path / "model.py")
    assert_onnx_matches_torch(net, tmp_path)


def test_eca_onnx_matches_torch_in_the_stem(tmp_path: Path) -> None:
    assert_onnx_matches_torch(rc.compile(stem_spec({"op": "eca", "kernel": 7})), tmp_path)


@pytest.mark.parametrize(("op", "words"), [
    ({"kernel": 4}, "the channel_conv kernel must be odd"),
    ({"kernel": 3, "gamma": 3.0}, "eca1: gamma and beta set the kernel from the channels"),
    ({"kernel": 3, "beta": 0.5}, "eca1: gamma and beta set the kernel"),
    ({"gamma": 0.0}, "eca1"),
])
def test_eca_invalid_options_are_one_line_spec_errors(op: dict[str, Any], words: str) -> None:
    assert words in spec_error(stem_spec({"op": "eca", **op}))


# ---- blurpool -------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("side", [15, 16])
def test_blurpool_equals_timm(size: int, stride: int, side: int) -> None:
    op = {"op": "blurpool", "size": size, "stride": stride}
    net = rc.compile(stem_spec(op, side=side))
    model, _ = build(net)
    assert "filt" not in str(model.state_dict().keys())  # a buffer outside the state_dict
    reference = BlurPool2d(8, filt_size=size, stride=stride).eval()
    x = torch.randn(2, 8, side, side)
    with torch.no_grad():
        got = model.blurpool1(x)
        torch.testing.assert_close(got, reference(x), rtol=1e-6, atol=1e-6)
    assert tuple(got.shape[1:]) == net.graph.nodes["blurpool1"]["shape"]
    assert net.graph.nodes["blurpool1"]["params"] == 0
    assert net.graph.nodes["blurpool1"]["macs"] == got[0].numel() * size * size


@pytest.mark.parametrize("op", [{}, {"size": 5}, {"size": 4, "stride": 1}, {"stride": 3}])
def test_blurpool_onnx_matches_torch(op: dict[str, Any], tmp_path: Path) -> None:
    net = rc.compile(stem_spec({"op": "blurpool", **op}, side=17))
    assert_onnx_matches_torch(net, tmp_path)


def test_blurpool_in_a_block_with_an_expression_stride(tmp_path: Path) -> None:
    net = rc.compile(block_spec({"op": "blurpool", "name": "aa", "stride": "stride",
                                 "when": "stride > 1"}, conv_stride=1))
    assert "BlurPool2d(channels, stride=stride)" in net.to_torch_source()
    assert [n for n, d in net.graph.nodes(data=True) if d["op"] == "blurpool"] == [
        "layer2.0.aa", "layer3.0.aa"]
    ruff_clean(net.to_torch_source(), tmp_path / "model.py")
    assert_onnx_matches_torch(net, tmp_path, opsets=(13, 21))


def test_blurpool_refuses_a_map_too_small_to_reflect() -> None:
    message = spec_error(stem_spec({"op": "blurpool", "size": 5}, side=2))
    assert "reflect padding 2" in message


# ---- drop_path ------------------------------------------------------------------------------------

def test_drop_path_in_training_drops_whole_samples_at_the_rate() -> None:
    rate = 0.3
    net = rc.compile(stem_spec({"op": "drop_path", "rate": rate}))
    module = net.build_torch().drop_path1.train()
    n = 20_000
    x = torch.rand(n, 4, 3, 3) + 0.5
    torch.manual_seed(0)
    with torch.no_grad():
        y = module(x)
    dropped = (y == 0).flatten(1).all(1)
    kept = ~dropped
    assert ((y == 0).flatten(1).any(1) == dropped).all()  # whole samples, never parts
    sigma = (rate * (1 - rate) / n) ** 0.5
    assert abs(float(dropped.float().mean()) - rate) < 5 * sigma
    torch.testing.assert_close(y[kept], x[kept] / (1 - rate), rtol=1e-6, atol=0)


def test_drop_path_is_the_identity_in_eval_and_costs_nothing(tmp_path: Path) -> None:
    net = rc.compile(stem_spec({"op": "drop_path", "rate": 0.5}))
    plain = rc.compile(stem_spec())
    model = net.build_torch().eval()
    x = torch.randn(5, 8, 4, 4)
    with torch.no_grad():
        assert torch.equal(model.drop_path1(x), x)
    data = net.graph.nodes["drop_path1"]
    assert (data["params"], data["macs"], data["acts"]) == (0, 0, 0)
    assert (net.total_macs, net.total_params) == (plain.total_macs, plain.total_params)
    net.to_onnx(tmp_path / "m.onnx", weights=init_weights(net.graph))
    names = [node.name for node in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert not [name for name in names if "drop_path" in name]
    assert_onnx_matches_torch(net, tmp_path)


def test_drop_path_rate_expressions_in_a_block(tmp_path: Path) -> None:
    """A rate from a block param, and from defaults.drop_path_rate (timm's linear rule); blocks
    whose rate is 0 have no drop_path."""
    net = rc.compile(block_spec({"op": "drop_path", "name": "drop_path", "rate": "dp"}))
    assert not [n for n, d in net.graph.nodes(data=True) if d["op"] == "drop_path"]
    spec = block_spec({"op": "drop_path", "name": "drop_path", "rate": "dp"})
    spec["stages"][1]["dp"] = 0.25
    net = rc.compile(spec)
    rates = {n: d["rate"] for n, d in net.graph.nodes(data=True) if d["op"] == "drop_path"}
    assert rates == {"layer2.0.drop_path": 0.25, "layer2.1.drop_path": 0.25}
    source = net.to_torch_source()
    assert "nn.Identity() if dp == 0 else DropPath(dp)" in source
    ruff_clean(source, tmp_path / "model.py")
    assert_onnx_matches_torch(net, tmp_path, opsets=(21,))

    linear = rc.compile(block_spec({"op": "drop_path", "name": "drop_path", "rate": "drop_path_rate"},
                                   defaults={"drop_path_rate": 0.2}))
    model = linear.build_torch()
    rates = [getattr(model.get_submodule(f"layer{s}.{b}.drop_path"), "rate", 0.0)
             for s, depth in ((1, 2), (2, 2), (3, 1)) for b in range(depth)]
    assert rates == pytest.approx([0.2 * i / 4 for i in range(5)])
    assert [d["rate"] for _, d in linear.graph.nodes(data=True) if d["op"] == "drop_path"] == \
        pytest.approx(rates[1:])


@pytest.mark.parametrize(("rate", "words"), [
    (1.0, "stem[1].rate: rate 1.0 must be from 0.0 to below 1.0"),
    (1, "stem[1].rate: rate 1.0 must be from 0.0 to below 1.0"),
    (-0.1, "stem[1].rate: rate -0.1 must be from 0.0 to below 1.0"),
    ("0.5 * 3", "stem[1].rate: 1.5 = 1.5; must be a number from 0.0 to below 1.0"),
])
def test_drop_path_refuses_rates_outside_0_to_1(rate: Any, words: str) -> None:
    assert words in spec_error(stem_spec({"op": "drop_path", "rate": rate}))


# ---- all together ---------------------------------------------------------------------------------

def test_every_new_op_in_one_network_is_ruff_clean_and_onnx_matches(tmp_path: Path) -> None:
    net = rc.compile(block_spec({"op": "eca", "name": "eca"},
                                {"op": "blurpool", "name": "aa", "size": 5, "stride": 1},
                                {"op": "se", "name": "se", "ratio": 0.25},
                                {"op": "drop_path", "name": "drop_path", "rate": 0.1}))
    source = net.to_torch_source()
    for helper_class in ("class EcaModule", "class BlurPool2d", "class DropPath",
                         "class SEModule", "def make_divisible"):
        assert source.count(helper_class) == 1
    ruff_clean(source, tmp_path / "model.py")
    assert_onnx_matches_torch(net, tmp_path)
