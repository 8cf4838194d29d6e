"""What users of the generated code see: one class per block template, no no-op modules, built
models that pickle and show their source, a short repr, wrapped long lines."""

from __future__ import annotations

import copy
import inspect
import pickle
import subprocess
import sys
from pathlib import Path

import onnx
import torch
import yaml
from support import ROOT, flat_spec

import resnet_compiler as rc


def test_built_models_pickle_and_show_their_source() -> None:
    net = rc.compile(ROOT / "spec" / "resnet18.yaml")
    model = net.build_torch().eval()
    again = pickle.loads(pickle.dumps(model))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    source = inspect.getsource(type(model))
    assert source.startswith("class ResNet18(nn.Module):") and "def forward" in source
    assert "class BasicBlock(nn.Module):" in inspect.getsource(type(model.layer1[0]))
    assert type(model).__module__.startswith("resnet_compiler.generated.")


def test_repr_of_a_compiled_network_is_one_short_line() -> None:
    text = repr(rc.compile(ROOT / "spec" / "resnet50.yaml"))
    assert text == ("CompiledNetwork('resnet50', input 3x224x224, 1000 classes, blocks: Bottleneck,"
                    " 25,557,032 params, 4.089 GMACs)")


def test_when_makes_an_optional_submodule_not_a_second_class() -> None:
    net = rc.compile(ROOT / "examples" / "custom_block.yaml")
    source = net.to_torch_source()
    assert source.count("class InvertedResidual") == 1
    assert "self.se = None" in source
    model = net.build_torch()
    assert model.layer2[0].se is None and model.layer3[0].se is not None
    spec = flat_spec(ROOT / "spec" / "seresnet50.yaml")
    spec["stages"][1]["se"] = False
    source = rc.compile(spec).to_torch_source()
    assert source.count("(nn.Module):") == 3  # SEModule, the block, the model


def test_no_op_pools_vanish_from_code_graph_and_onnx(tmp_path: Path) -> None:
    net = rc.compile(ROOT / "spec" / "resnet50d.yaml")
    assert "layer1.0.downsample.0" not in net.graph
    assert list(net.graph.predecessors("layer1.0.downsample.1")) == ["maxpool"]
    assert net.graph.nodes["layer2.0.downsample.0"]["op"] == "avgpool"
    model = net.build_torch()
    assert isinstance(model.layer1[0].downsample[0], torch.nn.Identity)
    assert isinstance(model.layer2[0].downsample[0], torch.nn.AvgPool2d)
    net.to_onnx(tmp_path / "m.onnx")
    pools = [n for n in onnx.load(tmp_path / "m.onnx").graph.node if n.op_type == "AveragePool"]
    assert [n.name for n in pools] == ["layer2.0.downsample.0", "layer3.0.downsample.0",
                                       "layer4.0.downsample.0"]


def test_long_expressions_are_wrapped_and_stay_ruff_clean(tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / "examples" / "custom_block.yaml").read_text())
    block = copy.deepcopy(spec["blocks"]["inverted"])
    block["params"]["dilation_rate"] = 1
    block["ops"][3]["dilation"] = "max(1, dilation_rate * (in_channels // in_channels))"
    block["ops"][3]["padding"] = ("max(1, dilation_rate * (in_channels // in_channels))"
                                     " * (3 - 1) // 2 + 0 * expand_ratio * expand_ratio")
    block["vars"]["hidden"] = ("make_divisible(in_channels * expand_ratio + 0 * dilation_rate"
                               " * expand_ratio * expand_ratio * expand_ratio, 8, round_limit=0)")
    spec["blocks"]["inverted"] = block
    spec["stages"][2]["dilation_rate"] = 2
    net = rc.compile(spec)
    path = tmp_path / "model.py"
    path.write_text(net.to_torch_source())
    assert max(len(line) for line in path.read_text().splitlines()) <= 88
    ruff = Path(sys.executable).with_name("ruff")
    formatted = subprocess.run([str(ruff), "format", "--isolated", "--diff", str(path)],
                               capture_output=True, text=True)
    assert formatted.returncode == 0, formatted.stdout  # ruff format (defaults) changes nothing
    r = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", "--select",
                        "E,F,W,I,B,UP,SIM,RUF", "--line-length", "100", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    model = net.build_torch().eval()
    assert model.layer3[0].depthwise.dilation == (2, 2)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 100)
