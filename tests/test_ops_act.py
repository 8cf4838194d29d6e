"""The `act` op: every fn against torch's own functional, and its ONNX lowering against torch under
onnxruntime at opsets before and after the fused ONNX ops (HardSwish 14, Mish 18, Gelu 20)."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from support import rel_err, run_cli
from torch import nn

import resnet_compiler as rc
from resnet_compiler.ops import REGISTRY
from resnet_compiler.runtime.verify import _onnx_shapes
from resnet_compiler.runtime.weights import init_weights

Functional = Callable[[torch.Tensor], torch.Tensor]

# case id: (the act op as written in a spec, torch's functional for it, the nn module class,
#           the module attributes the emitted constructor must set)
CASES: dict[str, tuple[dict[str, Any], Functional, type[nn.Module], dict[str, Any]]] = {
    "relu": ({"fn": "relu"}, F.relu, nn.ReLU, {"inplace": True}),
    "relu6": ({"fn": "relu6"}, F.relu6, nn.ReLU6, {"inplace": True}),
    "leaky_relu": ({"fn": "leaky_relu"}, F.leaky_relu, nn.LeakyReLU,
                   {"negative_slope": 0.01, "inplace": True}),
    "leaky_relu-0.2": ({"fn": "leaky_relu", "slope": 0.2},
                       functools.partial(F.leaky_relu, negative_slope=0.2), nn.LeakyReLU,
                       {"negative_slope": 0.2, "inplace": True}),
    "leaky_relu-negative": ({"fn": "leaky_relu", "slope": -0.5},
                            functools.partial(F.leaky_relu, negative_slope=-0.5), nn.LeakyReLU,
                            {"negative_slope": -0.5, "inplace": False}),
    "elu": ({"fn": "elu"}, F.elu, nn.ELU, {"alpha": 1.0, "inplace": True}),
    "elu-0.5": ({"fn": "elu", "alpha": 0.5}, functools.partial(F.elu, alpha=0.5), nn.ELU,
                {"alpha": 0.5, "inplace": True}),
    "silu": ({"fn": "silu"}, F.silu, nn.SiLU, {"inplace": True}),
    "gelu": ({"fn": "gelu"}, F.gelu, nn.GELU, {"approximate": "none"}),
    "gelu_tanh": ({"fn": "gelu_tanh"}, functools.partial(F.gelu, approximate="tanh"), nn.GELU,
                  {"approximate": "tanh"}),
    "hardswish": ({"fn": "hardswish"}, F.hardswish, nn.Hardswish, {"inplace": True}),
    "hardsigmoid": ({"fn": "hardsigmoid"}, F.hardsigmoid, nn.Hardsigmoid, {"inplace": True}),
    "sigmoid": ({"fn": "sigmoid"}, torch.sigmoid, nn.Sigmoid, {}),
    "tanh": ({"fn": "tanh"}, torch.tanh, nn.Tanh, {}),
    "mish": ({"fn": "mish"}, F.mish, nn.Mish, {"inplace": True}),
    "default": ({}, F.relu, nn.ReLU, {"inplace": True}),
}
FNS = ("relu", "relu6", "leaky_relu", "elu", "silu", "gelu", "gelu_tanh", "hardswish", "hardsigmoid",
       "sigmoid", "tanh", "mish", "identity")
OPSETS = (13, 17, 21)
# fused ONNX op per fn, and the first opset that has it
FUSED = {"hardswish": ("HardSwish", 14), "mish": ("Mish", 18), "gelu": ("Gelu", 20),
         "gelu_tanh": ("Gelu", 20)}
SIDE = 8


def act_spec(act: dict[str, Any], name: str = "t") -> dict[str, Any]:
    """A tiny net whose stem is conv -> the act under test."""
    return {"name": name, "input": {"channels": 3, "height": SIDE, "width": SIDE}, "num_classes": 5,
            "stem": [{"op": "conv", "channels": 8, "kernel": 3}, {"op": "act", **act}],
            "stages": [{"block": "basic", "depth": 1, "channels": 8}]}


def act_node(net: rc.CompiledNetwork) -> str:
    (node,) = [n for n, d in net.graph.nodes(data=True) if d["op"] == "act"]
    return node


def wide_input(batch: int, seed: int = 0) -> torch.Tensor:
    """Large enough that the conv output covers every region (below -3, above 6) of every fn."""
    return torch.randn(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed)) * 5


class OutOfPlace(nn.Module):
    """A reference stand-in for the emitted act: torch's functional, never in place."""

    def __init__(self, fn: Functional) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


# ---- spec side -----------------------------------------------------------------------------------

def test_fn_choices_are_the_documented_ones() -> None:
    model = REGISTRY["act"].model
    assert model is not None
    assert model.model_fields["fn"].annotation.__args__ == FNS
    assert REGISTRY["act"].role == "act"


@pytest.mark.parametrize("case", sorted(CASES))
def test_node_attributes_and_counts(case: str) -> None:
    act, *_ = CASES[case]
    net = rc.compile(act_spec(act))
    data = net.graph.nodes[act_node(net)]
    assert data["fn"] == act.get("fn", "relu")
    if data["fn"] == "leaky_relu":
        assert data["slope"] == act.get("slope", 0.01)
    if data["fn"] == "elu":
        assert data["alpha"] == act.get("alpha", 1.0)
    assert data["shape"] == (8, SIDE, SIDE)
    assert (data["params"], data["macs"], data["acts"]) == (0, 0, 8 * SIDE * SIDE)
    # an act adds no MACs or parameters: the same net with relu counts the same
    relu_net = rc.compile({**act_spec({}), "stem": [{"op": "conv", "channels": 8, "kernel": 3},
                                                   {"op": "relu"}]})
    assert (net.total_macs, net.total_params) == (relu_net.total_macs, relu_net.total_params)


def test_unknown_fn_is_one_cli_line_listing_the_choices(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: t\ninput: {channels: 3, height: 16, width: 16}\nnum_classes: 5\n"
                    "stem:\n  - {op: conv, channels: 8, kernel: 3}\n  - {op: act, fn: swishh}\n"
                    "stages:\n  - {block: basic, depth: 1, channels: 8}\n")
    r = run_cli(spec, "--check")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{spec}:6: stem[1].fn: "), lines[0]
    assert "(got 'swishh')" in lines[0]
    for fn in FNS:
        assert f"'{fn}'" in lines[0], fn


@pytest.mark.parametrize(("act", "words"), [
    ({"fn": "silu", "slope": 0.1}, "stem[1].slope: slope 0.1 applies only to fn: leaky_relu"),
    ({"alpha": 2.0}, "stem[1].alpha: alpha 2.0 applies only to fn: elu"),
    ({"fn": "leaky_relu", "slope": float("nan")}, "stem[1].slope"),
    ({"fn": "elu", "alpha": "1"}, "stem[1].alpha"),
    ({"fn": "relu", "inplace": True}, "unknown key 'inplace'"),
])
def test_invalid_parameters_are_spec_errors(act: dict[str, Any], words: str) -> None:
    with pytest.raises(rc.SpecError) as e:
        rc.compile(act_spec(act))
    assert words in str(e.value)


def test_relu_op_is_unchanged_and_act_defaults_to_it() -> None:
    relu = rc.compile({**act_spec({}), "stem": [{"op": "conv", "channels": 8, "kernel": 3},
                                               {"op": "relu", "name": "act1"}]})
    act = rc.compile(act_spec({}))
    assert relu.graph.nodes["act1"]["op"] == "relu"
    assert "self.act1 = nn.ReLU(inplace=True)" in relu.to_torch_source()
    assert "self.act1 = nn.ReLU(inplace=True)" in act.to_torch_source()
    assert repr(relu.build_torch()) == repr(act.build_torch())


# ---- PyTorch ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_module_equals_the_functional_on_the_conv_output(case: str) -> None:
    act, fn, cls, expected = CASES[case]
    net = rc.compile(act_spec(act))
    torch.manual_seed(0)
    model = net.build_torch().eval()
    node = act_node(net)
    module = model.get_submodule(node)
    assert type(module) is cls
    for attr, value in expected.items():
        assert getattr(module, attr) == value, attr
    if "inplace" not in expected:
        assert "inplace" not in net.to_torch_source().rsplit(f"self.{node} = ", 1)[1].split("\n")[0]
    seen: dict[str, torch.Tensor] = {}
    model.conv1.register_forward_hook(lambda _m, _i, o: seen.__setitem__("conv", o.clone()))
    module.register_forward_hook(lambda _m, _i, o: seen.__setitem__("act", o.clone()))
    with torch.no_grad():
        model(wide_input(2))
    conv = seen["conv"]
    assert conv.min() < -3 and conv.max() > 6  # every region of every fn is exercised
    torch.testing.assert_close(seen["act"], fn(conv), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_gradients_equal_the_out_of_place_functional(case: str) -> None:
    """The in-place module's backward agrees with torch's functional applied out of place."""
    act, fn, _, _ = CASES[case]
    net = rc.compile(act_spec(act))
    torch.manual_seed(0)
    model = net.build_torch().train()
    reference = copy.deepcopy(model)
    node = act_node(net)
    setattr(reference, node, OutOfPlace(fn))
    grads = []
    for m in (model, reference):
        x = wide_input(3).requires_grad_()
        (m(x) ** 2).sum().backward()
        grads.append((x.grad, m.conv1.weight.grad))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_an_act_after_an_act_trains() -> None:
    spec = act_spec({"fn": "silu"})
    spec["stem"].insert(1, {"op": "act", "fn": "sigmoid"})
    model = rc.compile(spec).build_torch().train()
    model(wide_input(2)).sum().backward()


def test_emitted_source_with_every_fn_is_ruff_clean(tmp_path: Path) -> None:
    spec = act_spec({})
    spec["stem"] = [{"op": "conv", "channels": 8, "kernel": 3},
                    *({"op": "act", **CASES[c][0]} for c in sorted(CASES))]
    source = rc.compile(spec).to_torch_source()
    assert "import math" not in source
    path = tmp_path / "model.py"
    path.write_text(source)
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    r = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select",
                        "E,F,W,I,B,UP,SIM,RUF", "--line-length", "100", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_act_in_a_custom_block_branch_and_post(tmp_path: Path) -> None:
    """Inside a block class: behind a `when`, and after the add (fed by an in-place-safe input)."""
    spec = act_spec({"fn": "mish"})
    spec["blocks"] = {"mine": {
        "params": {"gated": True},
        "out_channels": "channels",
        "branch": [{"op": "conv", "name": "conv1", "channels": "channels", "kernel": 3},
                   {"op": "bn", "name": "bn1"},
                   {"op": "act", "name": "act1", "fn": "gelu_tanh"},
                   {"op": "conv", "name": "conv2", "channels": "channels", "kernel": 3},
                   {"op": "act", "name": "gate", "fn": "hardsigmoid", "when": "gated"}],
        "post": [{"op": "act", "name": "act2", "fn": "leaky_relu", "slope": 0.1}],
    }}
    spec["stages"] = [{"block": "mine", "depth": 2, "channels": 8},
                      {"block": "mine", "depth": 1, "channels": 8, "gated": False}]
    net = rc.compile(spec)
    torch.manual_seed(0)
    model = net.build_torch().eval()
    block = model.layer1[0]
    assert isinstance(block.act1, nn.GELU) and block.act1.approximate == "tanh"
    assert isinstance(block.gate, nn.Hardsigmoid)
    assert isinstance(block.act2, nn.LeakyReLU) and block.act2.negative_slope == 0.1
    assert model.layer2[0].gate is None
    seen: dict[str, torch.Tensor] = {}
    block.conv2.register_forward_hook(lambda _m, _i, o: seen.__setitem__("conv2", o.clone()))
    block.gate.register_forward_hook(lambda _m, _i, o: seen.__setitem__("gate", o.clone()))
    with torch.no_grad():
        model(wide_input(2))
    torch.testing.assert_close(seen["gate"], F.hardsigmoid(seen["conv2"]), rtol=1e-6, atol=1e-6)
    model.train()
    model(wide_input(2)).sum().backward()  # the in-place choices keep autograd valid
    for opset in (13, 21):
        _assert_onnx_matches(net, tmp_path / f"{opset}.onnx", opset, None)


# ---- ONNX ----------------------------------------------------------------------------------------

def _torch_from(net: rc.CompiledNetwork, sd: dict[str, np.ndarray]) -> nn.Module:
    model = net.build_torch()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    return model.eval()


def _assert_onnx_matches(net: rc.CompiledNetwork, path: Path, opset: int,
                         act_value: str | None) -> onnx.ModelProto:
    """Write the ONNX file (also exposing the act's value as an output), run it at batch 1 and 3
    under onnxruntime CPU, and compare logits (and the act's value) with torch."""
    sd = init_weights(net.graph, realistic_bn=True)
    model = _torch_from(net, sd)
    net.to_onnx(path, weights=sd, opset=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    n_values, mismatches = _onnx_shapes(path, net.graph, True, None)  # strict shape inference
    assert not mismatches and n_values == net.graph.number_of_nodes()
    assert proto.opset_import[0].version == opset
    outputs = ["logits"]
    if act_value is not None:
        (info,) = [v for v in proto.graph.value_info if v.name == act_value]
        proto.graph.output.append(info)
        outputs.append(act_value)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    seen: dict[str, torch.Tensor] = {}
    if act_value is not None:
        model.get_submodule(act_value).register_forward_hook(
            lambda _m, _i, o: seen.__setitem__("act", o.clone()))
    for batch in (1, 3):
        x = wide_input(batch, seed=batch)
        with torch.no_grad():
            want = model(x)
        got = session.run(outputs, {"input": x.numpy()})
        assert got[0].shape == (batch, 5)
        assert rel_err(want, got[0]) <= 1e-4, (batch, rel_err(want, got[0]))
        if act_value is not None:
            assert rel_err(seen["act"], got[1]) <= 1e-4, (batch, rel_err(seen["act"], got[1]))
    return proto


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_onnxruntime_equals_torch(case: str, opset: int, tmp_path: Path) -> None:
    act, *_ = CASES[case]
    net = rc.compile(act_spec(act))
    node = act_node(net)
    proto = _assert_onnx_matches(net, tmp_path / "m.onnx", opset, node)
    op_types = {n.op_type for n in proto.graph.node if n.name == node or n.name.startswith(f"{node}.")}
    fn = act.get("fn", "relu")
    if fn in FUSED:
        fused, since = FUSED[fn]
        assert (fused in op_types) == (opset >= since), op_types
        if opset < since:
            assert op_types <= {"Mul", "Add", "Erf", "Tanh", "Softplus", "HardSigmoid"}, op_types
    # every node the lowering used exists in the target opset's ONNX schema
    for op_type in op_types:
        onnx.defs.get_schema(op_type, opset)


def test_relu6_clips_with_constant_inputs(tmp_path: Path) -> None:
    net = rc.compile(act_spec({"fn": "relu6"}))
    proto = _assert_onnx_matches(net, tmp_path / "m.onnx", 13, act_node(net))
    (clip,) = [n for n in proto.graph.node if n.op_type == "Clip"]
    constants = {n.output[0]: n for n in proto.graph.node if n.op_type == "Constant"}
    bounds = [onnx.helper.get_attribute_value(constants[i].attribute[0]) for i in clip.input[1:]]
    assert bounds == [0.0, 6.0]
    # Clip's min and max must be scalars (tensors of empty shape)
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in inferred.graph.value_info}
    assert [shapes[i] for i in clip.input[1:]] == [[], []]

