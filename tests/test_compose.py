"""The composable language: modules, loops over paths, fan-in, layer choices that name modules,
user names that shadow the language's, and the generated classes honouring their params."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
from support import ROOT, flat_spec, flat_text

import resnet_compiler as rc
from resnet_compiler.errors import SpecError


def _zoo(name: str, side: int = 32) -> dict[str, Any]:
    spec = flat_spec(ROOT / "spec" / "zoo" / f"{name}.yaml")
    spec["input"] = {"channels": 3, "height": side, "width": side}
    spec["num_classes"] = 5
    return spec


def _torch_equals_onnx(net: rc.CompiledNetwork, tmp_path: Any) -> None:
    torch.manual_seed(0)
    model = net.build_torch().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "m.onnx"
    net.to_onnx(path, weights=model.state_dict())
    c, h, w = net.input_shape
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_the_generated_resnest_block_honours_radix() -> None:
    """ResNestBottleneck(..., radix=4) builds four paths and every one of them contributes."""
    ns = rc.compile(_zoo("resnest14d")).torch_namespace()
    torch.manual_seed(0)
    block = ns.ResNestBottleneck(64, 16, radix=4).eval()
    attn = block.conv2
    assert attn.conv.out_channels == 16 * 4 and attn.fc2.out_channels == 16 * 4
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        base = block(x)
        for path in range(4):
            changed = copy.deepcopy(block)
            changed.conv2.conv.weight[path * 16:(path + 1) * 16].zero_()
            assert (changed(x) - base).abs().max() > 1e-3, f"path {path} does not contribute"


@pytest.mark.parametrize(("preset", "defaults", "peer"), [
    ("resnest14d", {"radix": 4}, lambda: timm.create_model(
        "resnest14d", block_args=dict(radix=4, avd=True, avd_first=False))),
    ("resnest14d", {"radix": 1}, lambda: timm.create_model(
        "resnest14d", block_args=dict(radix=1, avd=True, avd_first=False))),
    ("res2net50_26w_4s", {"scale": 8}, lambda: timm.create_model("res2net50_26w_8s")),
])
def test_a_block_param_changes_the_network_as_timm(preset: str, defaults: dict[str, Any],
                                                   peer: Any) -> None:
    spec = _zoo(preset)
    spec["num_classes"] = 1000
    spec["defaults"] = {**spec.get("defaults", {}), **defaults}
    net = rc.compile(spec)
    theirs = peer().eval()
    ours = net.build_torch().eval()
    assert net.total_params == sum(p.numel() for p in theirs.parameters())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_modules_loops_and_fan_in_agree_between_torch_and_onnxruntime(tmp_path: Any) -> None:
    spec = {
        "name": "composed", "input": {"channels": 3, "height": 16, "width": 16},
        "num_classes": 4,
        "modules": {"gated_paths": {
            "params": {"paths": 3},
            "ops": [
                {"op": "split", "name": "parts", "parts": "paths"},
                {"repeat": "paths", "ops": [
                    {"op": "conv", "name": "convs", "input": "parts[i]",
                     "channels": "in_channels", "kernel": 3, "dilation": "i + 1"},
                    {"op": "relu", "name": "acts"}]},
                {"op": "add", "name": "total", "input": "acts[*]"},
                {"op": "concat", "name": "joined", "input": ["acts[*]", "total"]},
                {"op": "conv", "name": "proj", "channels": "in_channels", "kernel": 1}]}},
        "blocks": {"mine": {"params": {"paths": 3}, "out_channels": "channels", "branch": [
            {"op": "conv", "name": "conv1", "channels": "channels * paths", "kernel": 1,
             "stride": "stride"},
            {"op": "gated_paths", "name": "mix", "paths": "paths"},
            {"op": "conv", "name": "conv2", "channels": "channels", "kernel": 1},
            {"op": "bn", "name": "bn2"}]}},
        "stem": [{"op": "conv", "name": "conv1", "channels": 8, "kernel": 3}],
        "stages": [{"block": "mine", "depth": 2, "channels": 8},
                   {"block": "mine", "depth": 1, "channels": 16, "stride": 2, "paths": 2}],
    }
    net = rc.compile(spec)
    assert "layer2.0.mix.convs.1.weight" in net.build_torch().state_dict()
    assert "layer2.0.mix.convs.2" not in net.graph
    assert "class GatedPaths(nn.Module):" in net.to_torch_source()
    _torch_equals_onnx(net, tmp_path)


def test_a_conditional_add_reads_both_of_its_inputs(tmp_path: Any) -> None:
    """`add` of an earlier value and the op before it, under `when:`, adds the two (not the
    earlier value to itself)."""
    spec = {"name": "cond", "input": {"channels": 3, "height": 8, "width": 8}, "num_classes": 3,
            "blocks": {"mine": {"out_channels": "channels", "branch": [
                {"op": "conv", "name": "conv1", "channels": "channels", "kernel": 3},
                {"op": "relu", "name": "act1"},
                {"op": "conv", "name": "conv2", "channels": "channels", "kernel": 3},
                {"op": "bn", "name": "bn2"},
                {"op": "add", "name": "inner_sum", "input": ["act1", "bn2"],
                 "when": "block_index < 1"}]}},
            "stem": [{"op": "conv", "name": "conv1", "channels": 8, "kernel": 3}],
            "stages": [{"block": "mine", "depth": 2, "channels": 8}]}
    _torch_equals_onnx(rc.compile(spec), tmp_path)


def test_user_params_shadow_the_languages_names() -> None:
    """A block's own `dilation`, `radix`, `scale`, `attn`, ... mean what the block says."""
    def spec(names: list[str]) -> dict[str, Any]:
        a, b, c = names
        return {"name": "shadow", "input": {"channels": 3, "height": 16, "width": 16},
                "num_classes": 3,
                "blocks": {"mine": {"params": {a: 2, b: 1, c: 3}, "out_channels": "channels",
                                    "branch": [
                    {"op": "conv", "name": "conv1", "channels": f"channels * {a}", "kernel": 3,
                     "dilation": b},
                    {"op": "conv", "name": "conv2", "channels": "channels", "kernel": c}]}},
                "stages": [{"block": "mine", "depth": 2, "channels": 8}]}
    named = rc.compile(spec(["radix", "dilation", "scale"]))
    neutral = rc.compile(spec(["p1", "p2", "p3"]))
    assert (named.total_params, named.total_macs) == (neutral.total_params, neutral.total_macs)
    with_attn = spec(["attn", "dilation", "repeat"])
    assert rc.compile(with_attn).total_params == neutral.total_params


@pytest.mark.parametrize(("change", "message"), [
    ({"op": "gated", "name": "g", "pathz": 2}, "module 'gated' has no param 'pathz' (params:"
     " paths); did you mean 'paths'?"),
    ({"op": "gated", "name": "g", "paths": 65}, "a loop count must be a whole number from 1 to 64"),
    ({"op": "gated", "name": "g", "paths": 0}, "a loop count must be a whole number from 1 to 64"),
    ({"op": "gatd", "name": "g"}, "did you mean 'gated'?"),
])
def test_module_and_loop_errors_are_one_line(change: dict[str, Any], message: str) -> None:
    spec = {"name": "bad", "input": {"channels": 3, "height": 8, "width": 8}, "num_classes": 3,
            "modules": {"gated": {"params": {"paths": 2}, "ops": [
                {"op": "split", "name": "parts", "parts": 1},
                {"repeat": "paths", "ops": [{"op": "conv", "name": "convs", "input": "parts[0]",
                                             "channels": 4, "kernel": 1}]},
                {"op": "add", "input": "convs[*]"}]}},
            "blocks": {"mine": {"out_channels": 4, "branch": [change]}},
            "stages": [{"block": "mine", "depth": 1, "channels": 4}]}
    with pytest.raises(SpecError) as e:
        rc.compile(spec)
    assert message in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_a_module_that_contains_itself_is_refused() -> None:
    spec = {"name": "bad", "input": {"channels": 3, "height": 8, "width": 8}, "num_classes": 3,
            "modules": {"a": {"ops": [{"op": "b", "name": "inner"}]},
                        "b": {"ops": [{"op": "a", "name": "inner"}]}},
            "blocks": {"mine": {"out_channels": 3, "branch": [{"op": "a", "name": "m"}]}},
            "stages": [{"block": "mine", "depth": 1, "channels": 3}]}
    with pytest.raises(SpecError, match="contains itself"):
        rc.compile(spec)


def test_fan_in_over_a_value_without_parts_is_refused() -> None:
    spec = {"name": "bad", "input": {"channels": 3, "height": 8, "width": 8}, "num_classes": 3,
            "blocks": {"mine": {"out_channels": 3, "branch": [
                {"op": "conv", "name": "c", "channels": 3, "kernel": 1},
                {"op": "add", "name": "s", "input": "c[*]"}]}},
            "stages": [{"block": "mine", "depth": 1, "channels": 3}]}
    with pytest.raises(SpecError, match="'c' has no parts"):
        rc.compile(spec)


@pytest.mark.parametrize("attn", ["cbam", "se", "eca"])
def test_the_attention_choice_fills_every_block(attn: str) -> None:
    spec = flat_spec(ROOT / "spec" / "resnet18.yaml")
    spec["defaults"] = {"attn": attn}
    net = rc.compile(spec)
    theirs = timm.create_model("resnet18", block_args=dict(attn_layer=attn))
    assert net.total_params == sum(p.numel() for p in theirs.parameters())
    net.build_torch().load_state_dict(theirs.state_dict(), strict=True)


@pytest.mark.parametrize(("change", "message"), [
    ({"defaults": {"norm": {"op": "group_norm"}}},
     "defaults.norm: unknown op 'group_norm'; did you mean 'gn'?"),
    ({"blocks": {"mine": {"out_channels": "channels", "shortcut": "conv_bm",
                          "branch": [{"op": "conv", "name": "conv1", "channels": "channels",
                                      "kernel": 3}]}}},
     "blocks.mine.shortcut: unknown shortcut 'conv_bm'"),
    ({"blocks": {"mine": {"out_channels": "channels",
                          "branch": [{"op": "conv", "name": "conv1.x", "channels": "channels",
                                      "kernel": 3}]}}},
     "'conv1.x': its part 'x' is reserved"),
])
def test_rough_edges_are_one_line_errors_at_their_own_key(change: dict[str, Any],
                                                          message: str) -> None:
    spec = {"name": "rough", "input": {"channels": 3, "height": 8, "width": 8}, "num_classes": 3,
            "blocks": {"mine": {"out_channels": "channels", "branch": [
                {"op": "conv", "name": "conv1", "channels": "channels", "kernel": 3}]}},
            "stages": [{"block": "mine", "depth": 1, "channels": 3}], **change}
    with pytest.raises(SpecError) as e:
        rc.compile(spec)
    assert message in str(e.value)


def test_debug_prints_the_one_line_error_after_the_traceback(tmp_path: Any) -> None:
    from support import run_cli
    spec = tmp_path / "s.yaml"
    spec.write_text(flat_text(ROOT / "spec" / "resnet18.yaml").replace(
        "op: maxpool", "op: maxpoool"))
    plain = run_cli(spec, "--check")
    debug = run_cli(spec, "--check", "--debug")
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


REGNETZ_LIST_HEAD = [
    {"op": "conv", "name": "final_conv.conv", "channels": 1024, "kernel": 1},
    {"op": "bn", "name": "final_conv.bn"},
    {"op": "relu", "name": "final_conv.act"},
    {"op": "global_pool", "name": "head.global_pool", "mode": "avg"},
    {"op": "flatten", "name": "head.flatten"},
    {"op": "dropout", "name": "head.drop", "p": 0.2},
    "pre_logits",
    {"op": "linear", "name": "head.fc"},
]


def test_a_head_written_as_ops_equals_timms_head_and_pre_logits() -> None:
    spec = flat_spec(ROOT / "spec" / "regnet" / "regnetz_005.yaml")
    spec["head"] = REGNETZ_LIST_HEAD
    net = rc.compile(spec)
    theirs = timm.create_model("regnetz_005", drop_rate=0.2).eval()
    ours = net.build_torch().eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert isinstance(ours.head.drop, torch.nn.Dropout) and ours.head.drop.p == 0.2
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)
        mine = ours.forward_head(ours.forward_features(x), pre_logits=True)
        peer = theirs.forward_head(theirs.forward_features(x), pre_logits=True)
        assert mine.shape == (1, 1024) and torch.allclose(mine, peer, atol=1e-5)
    assert "nn.Linear(1024, num_classes)" in net.to_torch_source()


def test_a_head_without_a_classifier_is_refused() -> None:
    spec = flat_spec(ROOT / "spec" / "regnet" / "regnetz_005.yaml")
    spec["head"] = REGNETZ_LIST_HEAD[:4]
    with pytest.raises(SpecError, match="must end in the classifier's 1000 outputs"):
        rc.compile(spec)


def test_a_stage_gives_one_width_per_block() -> None:
    spec = flat_spec(ROOT / "spec" / "resnet50.yaml")
    spec["stages"][1].update(channels=[128, 120, 112, 128], base_width=[64, 64, 32, 64])
    model = rc.compile(spec).build_torch()
    assert [b.conv2.out_channels for b in model.layer2] == [128, 120, 56, 128]
    spec["stages"][1]["channels"] = [128, 120]
    with pytest.raises(SpecError, match="channels gives 2 widths for 4 blocks"):
        rc.compile(spec)


# ---- module params that fix the class, checks, modules in the stem ------------------------------

GATED = {"class_name": "Gate", "doc": "A pooled gate whose function is a param.",
         "params": {"fn": "sigmoid", "bias": True, "width": 4},
         "checks": [{"when": "width > in_channels", "error": "width exceeds the input channels"}],
         "ops": [{"op": "reduce", "name": "pooled"},
                 {"op": "conv", "name": "fc", "channels": "in_channels", "kernel": 1,
                  "bias": "bias"},
                 {"op": "act", "name": "gate", "fn": "fn"},
                 {"op": "mul", "name": "gated", "input": ["x", "gate"]}]}


def _gated(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"name": "g", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 5,
            "modules": {"gated": GATED},
            "stem": [{"op": "conv", "channels": 8, "kernel": 3}, *calls],
            "stages": [{"block": "basic", "depth": 1, "channels": 8}]}


def test_word_params_fix_the_class_and_each_choice_is_its_own_class() -> None:
    net = rc.compile(_gated({"op": "gated"}, {"op": "gated", "fn": "hardsigmoid", "bias": False}))
    src = net.to_torch_source()
    assert '"""A pooled gate whose function is a param."""' in src
    first, second = src.split("class Gate(nn.Module)")[1], src.split("class Gate2(nn.Module)")[1]
    assert "nn.Sigmoid()" in first.split("class ")[0] and "bias=True" in first.split("class ")[0]
    assert "nn.Hardsigmoid(" in second.split("class ")[0]
    assert "bias=False" in second.split("class ")[0]
    assert "self.gated1 = Gate(8)" in src and "self.gated2 = Gate2(8)" in src
    model = net.build_torch().eval()
    assert set(model.gated2.state_dict()) == {"fc.weight"}
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        s = model.gated2.fc(x.mean((2, 3), keepdim=True))
        torch.testing.assert_close(model.gated2(x), x * torch.nn.functional.hardsigmoid(s))


@pytest.mark.parametrize(("call", "words"), [
    ({"fn": "sigmoidd"}, "stem[1].fn: fn: sigmoidd does not fit module 'gated': its act.fn must be"),
    ({"fn": "width"}, "stem[1].fn: fn: width does not fit module 'gated'"),
    ({"bias": "bias"}, "stem[1].bias: bias: module 'gated' fixes its class by this param, so it"
                       " takes a value like True, not 'bias'"),
    ({"width": 9}, "gated1: width exceeds the input channels"),
])
def test_fixed_params_and_checks_are_one_line_errors_at_the_call(call: dict[str, Any],
                                                                 words: str) -> None:
    with pytest.raises(SpecError) as e:
        rc.compile(_gated({"op": "gated", **call}))
    assert words in str(e.value) and len(str(e.value).splitlines()) == 1


def test_a_doc_that_could_escape_the_docstring_is_refused() -> None:
    spec = _gated({"op": "gated"})
    spec["modules"]["gated"] = {**GATED, "doc": 'ends here"""; import os'}
    with pytest.raises(SpecError) as e:
        rc.compile(spec)
    assert "modules.gated.doc: a doc is plain text on one line" in str(e.value)


def test_cbam_in_the_stem_is_timms_cbam_module(tmp_path: Any) -> None:
    """A module called in the stem is a top-level module of its class: CBAM there loads timm's
    CbamModule's weights strictly and computes the same, in torch and onnxruntime."""
    from timm.layers.cbam import CbamModule
    net = rc.compile(_gated({"op": "cbam"}))
    assert "self.cbam1 = CbamModule(8)" in net.to_torch_source()
    model = net.build_torch().eval()
    peer = CbamModule(8).eval()
    model.cbam1.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.cbam1(x), peer(x), rtol=1e-6, atol=1e-6)
    _torch_equals_onnx(net, tmp_path)


def test_a_loop_inside_a_loop_is_one_spec_error() -> None:
    inner = {"repeat": 2, "ops": [{"op": "relu", "name": "r"}]}
    block = {"out_channels": "channels", "branch": [
        {"op": "conv", "name": "c", "channels": "channels", "kernel": 3},
        {"repeat": 2, "index": "j", "ops": [inner]}]}
    spec = _gated()
    spec.update(blocks={"b": block}, stages=[{"block": "b", "depth": 1, "channels": 8}])
    with pytest.raises(SpecError) as e:
        rc.compile(spec)
    assert "blocks.b.branch[1]: loops do not nest" in str(e.value)
    assert len(str(e.value).splitlines()) == 1
