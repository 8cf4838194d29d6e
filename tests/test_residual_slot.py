"""The residual written out: a block's `{op: shortcut}` slot, filled by the stage's,
`defaults.shortcut`'s or the block's shortcut, and an ordinary `add`. The classic form is the
same network, with the same code, as the `branch:` form it replaces; other uses (a projection in
every block, no shortcut at all) are what they say, against torchvision and onnxruntime."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from support import torch_and_onnx

import resnet_compiler as rc

# torchvision's Bottleneck in the `branch:` form the built-in block was written in before
BRANCH_BOTTLENECK = {
    "class_name": "Bottleneck",
    "params": {"expansion": 4, "groups": 1, "base_width": 64},
    "vars": {"width": "int(channels * (base_width / 64)) * groups"},
    "out_channels": "channels * expansion",
    "branch": [
        {"op": "conv", "name": "conv1", "channels": "width", "kernel": 1},
        {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "act1"},
        {"op": "conv", "name": "conv2", "channels": "width", "kernel": 3, "stride": "stride",
         "groups": "groups"},
        {"op": "bn", "name": "bn2"}, {"op": "relu", "name": "act2"},
        {"op": "conv", "name": "conv3", "channels": "out_channels", "kernel": 1},
        {"op": "bn", "name": "bn3"}],
    "post": [{"op": "relu", "name": "act3"}],
}


def _tiny(block: str = "bottleneck", **extra: Any) -> dict[str, Any]:
    return {"name": "tiny", "input": {"channels": 3, "height": 32, "width": 32}, "num_classes": 5,
            "stem": [{"op": "conv", "channels": 16, "kernel": 3}, {"op": "bn"}, {"op": "relu"}],
            "stages": [{"block": block, "depth": 2, "channels": 8},
                       {"block": block, "depth": 1, "channels": 16, "stride": 2}], **extra}


def _ops_block(**slot: Any) -> dict[str, Any]:
    """The bottleneck written with ops: its residual as a slot and an add."""
    block = copy.deepcopy(BRANCH_BOTTLENECK)
    ops = block.pop("branch") + [{"op": "shortcut", "name": "downsample", "input": "x", **slot},
                                 {"op": "add", "name": "add", "input": ["bn3", "downsample"]}]
    block["ops"] = ops + block.pop("post")
    block["last_norm"] = "bn3"
    return block


def _code(net: rc.CompiledNetwork) -> list[str]:
    return [line for line in net.to_torch_source().splitlines() if "sha256" not in line]


def _onnx_equals_torch(net: rc.CompiledNetwork, tmp_path: Path) -> torch.nn.Module:
    model, want, got, _ = torch_and_onnx(net, tmp_path)
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
    return model


def test_the_written_out_residual_is_the_branch_form_network_with_its_code() -> None:
    branch = rc.compile(_tiny("mine", blocks={"mine": BRANCH_BOTTLENECK}))
    ops = rc.compile(_tiny("mine", blocks={"mine": _ops_block()}))
    assert _code(ops) == _code(branch)
    assert dict(ops.graph.nodes(data=True)) == dict(branch.graph.nodes(data=True))
    assert list(ops.graph.edges(data=True)) == list(branch.graph.edges(data=True))
    assert "shortcut = x if self.downsample is None else self.downsample(x)" in \
        ops.to_torch_source()


def test_the_built_in_bottleneck_loads_torchvisions_resnet50_and_computes_the_same() -> None:
    net = rc.compile("resnet50")
    peer = torchvision.models.resnet50().eval()
    model = net.build_torch().eval()
    model.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), peer(x), rtol=1e-5, atol=1e-5)


def test_defaults_shortcut_fills_the_slot_of_the_built_in_blocks() -> None:
    """resnet50 with the ResNet-D shortcut is resnet50d's downsampling, key for key."""
    plain = rc.compile({"extends": "resnet50", "name": "d"})
    avg = rc.compile({"extends": "resnet50", "name": "d",
                      "defaults": {"shortcut": "avgpool_conv_bn"}})
    assert avg.graph.nodes["layer2.0.downsample.0"]["op"] == "avgpool"
    assert avg.graph.nodes["layer2.0.downsample.1"]["op"] == "conv"
    assert avg.total_params == plain.total_params  # the pool has no weights


def test_a_slot_used_in_every_block_projects_even_where_the_shape_stays(tmp_path: Path) -> None:
    """A slot under its own name and condition is ordinary ops: a projection in every block."""
    block = _ops_block(when="stride >= 1")
    block["ops"][-3]["name"] = "proj"
    block["ops"][-2]["input"] = ["bn3", "proj"]
    block["ops"][-2]["name"] = "sum"
    net = rc.compile(_tiny("mine", blocks={"mine": block}))
    for node in ("layer1.0.proj.0", "layer1.1.proj.0", "layer2.0.proj.1"):
        assert node in net.graph.nodes
    model = _onnx_equals_torch(net, tmp_path)
    keys = set(model.state_dict())
    assert {"layer1.1.proj.0.weight", "layer1.1.proj.1.running_var"} <= keys
    # the identity-shaped block's projection contributes (it is no identity)
    with torch.no_grad():
        x = torch.randn(1, 32, 8, 8)
        base = model.layer1[1](x)
        model.layer1[1].proj[0].weight.zero_()
        assert (model.layer1[1](x) - base).abs().max() > 1e-3


def test_shortcut_none_leaves_the_slot_empty() -> None:
    """`none`: the add reads the block's input itself, so the network is its stages' branches
    plus identities; where the shape changes that is one clear error."""
    same = {"name": "t", "input": {"channels": 3, "height": 32, "width": 32}, "num_classes": 5,
            "stem": [{"op": "conv", "channels": 8, "kernel": 3}],
            "stages": [{"block": "basic", "depth": 2, "channels": 8}]}
    plain = rc.compile(same)
    none = rc.compile({**same, "defaults": {"shortcut": "none"}})
    assert none.total_params == plain.total_params
    assert not any(".downsample" in n for n in none.graph.nodes)
    with pytest.raises(rc.SpecError) as e:
        rc.compile({"extends": "resnet18", "name": "t", "defaults": {"shortcut": "none"}})
    assert len(str(e.value).splitlines()) == 1
    assert "layer2.0.add: cannot add the branch 128x28x28 to the shortcut 64x56x56" in str(e.value)


def test_an_unknown_shortcut_and_a_slot_in_the_stem_are_one_line_errors() -> None:
    with pytest.raises(rc.SpecError) as e:
        rc.compile({"extends": "resnet18", "name": "t", "defaults": {"shortcut": "avgpol"}})
    assert "unknown shortcut 'avgpol'" in str(e.value) and len(str(e.value).splitlines()) == 1
    with pytest.raises(rc.SpecError) as e:
        rc.compile(_tiny(stem=[{"op": "shortcut"}]))
    assert "stem[0].op: a shortcut slot belongs in a block" in str(e.value)


def test_a_specs_own_names_shadow_the_built_in_library() -> None:
    """A block or module a spec declares under a built-in's name is the spec's own (a name the
    library gains later cannot break the spec); the built-in one serves every other spec."""
    own_block = copy.deepcopy(BRANCH_BOTTLENECK)
    own_block["class_name"] = "MyBottleneck"
    net = rc.compile(_tiny("bottleneck", blocks={"bottleneck": own_block}))
    assert "class MyBottleneck(nn.Module)" in net.to_torch_source()
    gate = {"class_name": "MyGate", "ops": [{"op": "act", "name": "gate", "fn": "sigmoid"},
                                            {"op": "mul", "name": "gated", "input": ["x", "gate"]}]}
    own = rc.compile(_tiny("basic", modules={"se": gate}, defaults={"attn": "se"}))
    plain = rc.compile(_tiny("basic", defaults={"attn": "se"}))
    assert "class MyGate(nn.Module)" in own.to_torch_source()
    assert "SEModule" not in own.to_torch_source()
    assert "class SEModule(nn.Module)" in plain.to_torch_source()
    assert plain.total_params > own.total_params  # the gate has no weights
    again = rc.compile(_tiny("basic", defaults={"attn": "se"}))  # no template kept from `own`
    assert again.to_torch_source() == plain.to_torch_source()


def test_a_chain_under_one_name_is_one_sequential_called_once() -> None:
    """Ops named `proj.0`, `proj.1` that form a chain are one nn.Sequential, built under their
    shared condition and called once (torchvision's `self.proj`); where only some members are
    conditional, the others are nn.Identity() when off (timm's avg downsample)."""
    block = _ops_block(when="stride >= 1")
    block["ops"][-3]["name"] = "proj"
    block["ops"][-2].update(input=["bn3", "proj"], name="sum")
    src = rc.compile(_tiny("mine", blocks={"mine": block})).to_torch_source()
    assert "        if stride >= 1:\n            self.proj = nn.Sequential(" in src
    assert "        else:\n            self.proj = None" in src
    assert "shortcut = x if self.proj is None else self.proj(x)" in src or \
        "out = x if self.proj is None else self.proj(x)" in src
    assert "self.proj[0]" not in src
    avg = rc.compile("regnetv_064").to_torch_source()
    assert "else nn.Identity()," in avg and "out = self.downsample(act1)" in avg
    assert "self.downsample[0]" not in avg
