"""Feature outputs (`outputs:`, `head: none`) against torchvision's feature extractor and timm's
forward_features / forward_head / feature_info, in torch and in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
import yaml
from conftest import examples
from hypothesis import event, given, settings
from hypothesis import strategies as st
from strategies import valid_specs
from support import ROOT, flat_spec, realistic_bn, rel_err, run_cli
from torchvision.models.feature_extraction import create_feature_extractor

import resnet_compiler as rc
from resnet_compiler.errors import SpecError
from resnet_compiler.runtime.infer import open_session, run_outputs
from resnet_compiler.runtime.weights import init_weights

STAGES = ["layer1", "layer2", "layer3", "layer4"]


def _spec(name: str, size: int = 64, **changes: object) -> dict:
    spec = flat_spec(ROOT / "spec" / f"{name}.yaml")
    spec["input"] = {"channels": 3, "height": size, "width": size}
    spec.update(changes)
    return spec


def _x(batch: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _onnx(net: rc.CompiledNetwork, sd: dict, path: Path, x: torch.Tensor) -> dict[str, np.ndarray]:
    net.to_onnx(path, weights=sd)
    return run_outputs(open_session(path, "cpu"), x.numpy())


@pytest.fixture(scope="module")
def resnet50() -> torch.nn.Module:
    return realistic_bn(torchvision.models.resnet50(weights=None)).eval()


def test_resnet50_stage_features_equal_torchvision_in_torch_and_onnxruntime(resnet50, tmp_path):
    net = rc.compile(_spec("resnet50", outputs=STAGES, head="none"))
    last = {s: f"{s}.{d - 1}.act3" for s, d in zip(STAGES, (3, 4, 6, 3), strict=True)}
    assert net.graph.graph["outputs"] == last
    assert net.graph.graph["num_classes"] is None and net.graph.graph["output"] is None
    assert net.total_params == 25_557_032 - (2048 * 1000 + 1000)  # the classifier is gone
    sd = {k: v for k, v in resnet50.state_dict().items() if not k.startswith("fc.")}
    model = net.build_torch().eval()
    model.load_state_dict(sd, strict=True)
    fx = create_feature_extractor(resnet50, {s: s for s in STAGES})
    x = _x()
    with torch.no_grad():
        want, got = fx(x), model(x)
    assert isinstance(got, list) and len(got) == 4
    for name, tensor in zip(STAGES, got, strict=True):
        assert tensor.shape == want[name].shape
        assert rel_err(want[name], tensor) < 1e-5, name
    assert [(i["module"], i["num_chs"], i["reduction"]) for i in model.feature_info] == [
        ("layer1", 256, 4), ("layer2", 512, 8), ("layer3", 1024, 16), ("layer4", 2048, 32)]
    outs = _onnx(net, sd, tmp_path / "f.onnx", x)
    assert list(outs) == STAGES
    for name in STAGES:
        assert rel_err(want[name], torch.from_numpy(outs[name])) < 1e-4, name


def test_head_remains_features_then_logits_and_timm_methods(resnet50, tmp_path):
    """With a head, forward returns the features and then the logits; forward_features,
    forward_head and feature_info agree with timm's resnet50 on the same weights."""
    net = rc.compile(_spec("resnet50", outputs=["layer2", "layer4"]))
    model = net.build_torch().eval()
    sd = resnet50.state_dict()
    model.load_state_dict(sd, strict=True)
    peer = timm.create_model("resnet50", pretrained=False).eval()
    peer.load_state_dict(sd, strict=True)
    fx = create_feature_extractor(resnet50, {"layer2": "layer2", "layer4": "layer4"})
    x = _x()
    with torch.no_grad():
        want, logits = fx(x), resnet50(x)
        layer2, layer4, got_logits = model(x)
        features = model.forward_features(x)
        assert rel_err(peer.forward_features(x), features) < 1e-5
        assert rel_err(peer.forward_head(features, pre_logits=True),
                       model.forward_head(features, pre_logits=True)) < 1e-5
        assert rel_err(logits, model.forward_head(features)) < 1e-5
    assert rel_err(want["layer2"], layer2) < 1e-5 and rel_err(want["layer4"], layer4) < 1e-5
    assert rel_err(logits, got_logits) < 1e-5
    timm_stages = {i["module"]: (i["num_chs"], i["reduction"]) for i in peer.feature_info}
    plain = rc.compile(_spec("resnet50")).build_torch()  # without outputs: every stage
    assert {i["module"]: (i["num_chs"], i["reduction"]) for i in plain.feature_info} == {
        k: v for k, v in timm_stages.items() if k in STAGES}
    outs = _onnx(net, sd, tmp_path / "h.onnx", x)
    assert list(outs) == ["layer2", "layer4", "logits"]
    assert rel_err(logits, torch.from_numpy(outs["logits"])) < 1e-4
    assert rel_err(want["layer4"], torch.from_numpy(outs["layer4"])) < 1e-4


def test_node_id_outputs_stay_unmodified_and_unfolded(tmp_path):
    """A conv's own output (not folded into its BN in ONNX), a BN output that an in-place ReLU
    follows, a block by id and by its last node."""
    tv = realistic_bn(torchvision.models.resnet18(weights=None)).eval()
    names = ["conv1", "bn1", "layer2.1", "layer3.0.act2"]
    net = rc.compile(_spec("resnet18", outputs=names, head="none"))
    model = net.build_torch().eval()
    sd = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    model.load_state_dict(sd, strict=True)
    fx = create_feature_extractor(tv, {"conv1": "conv1", "layer2.1": "layer2.1",
                                       "layer3.0": "layer3.0"})
    x = _x()
    with torch.no_grad():
        conv1, block, layer3 = fx(x).values()
        # torchvision's extractor would hand back bn1 after its in-place ReLU: compute it directly
        want, got = [conv1, tv.bn1(tv.conv1(x)), block, layer3], model(x)
    assert len(got) == 4 and all(rel_err(a, b) < 1e-5 for a, b in zip(want, got, strict=True))
    assert (want[1] < 0).any()  # bn1 has negatives: an in-place ReLU would have eaten them
    outs = _onnx(net, sd, tmp_path / "n.onnx", x)
    assert list(outs) == names
    for a, name in zip(want, names, strict=True):
        assert rel_err(a, torch.from_numpy(outs[name])) < 1e-4, name
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_spec("resnet18", outputs=names, head="none")))
    r = run_cli(path, "--verify")
    assert r.returncode == 0, r.stderr
    assert "compared 4 outputs (conv1, bn1, layer2.1, layer3.0.act2)" in r.stdout


def test_dotted_stage_paths_and_conv_classifier_match_timm_resnetv2():
    """timm's ResNetV2 nests stages (stages.0.blocks) and has a 1x1-conv classifier."""
    net = rc.compile(_spec("resnetv2_50", outputs=["stem", "stages.1", "stages.2.blocks.3"]))
    model = net.build_torch().eval()
    peer = realistic_bn(timm.create_model("resnetv2_50", pretrained=False)).eval()
    model.load_state_dict(peer.state_dict(), strict=True)
    x = _x()
    hooks = {}
    for name in ("stem", "stages.1", "stages.2.blocks.3"):
        peer.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: hooks.__setitem__(name, out))
    with torch.no_grad():
        logits = peer(x)
        *features, got_logits = model(x)
        f = model.forward_features(x)
        assert rel_err(peer.forward_head(f, pre_logits=True),
                       model.forward_head(f, pre_logits=True)) < 1e-5
    assert rel_err(logits, got_logits) < 1e-5
    for name, tensor in zip(("stem", "stages.1", "stages.2.blocks.3"), features, strict=True):
        assert rel_err(hooks[name], tensor) < 1e-5, name


BAD = [
    ({"outputs": ["layr2"]}, "outputs[0]: 'layr2' is no stage, block or stem op; did you mean 'layer2'?"),
    ({"outputs": ["layer1", "layer2.1.conv1"]}, "outputs[1]: 'layer2.1.conv1' is inside block layer2.1"),
    ({"outputs": ["fc"]}, "outputs[0]: 'fc' is part of the head"),
    ({"outputs": ["layer2", "layer2.1"]}, "outputs[1]: 'layer2.1' is the same feature map as 'layer2'"),
    ({"outputs": ["layer3", "layer1"]}, "outputs[1]: 'layer1' comes before 'layer3' in the network"),
    ({"head": "none"}, "head: none leaves nothing to return"),
    ({"outputs": []}, "outputs"),
    ({"head": "nope"}, "head"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_outputs_are_one_line_errors(change, message, tmp_path):
    spec = _spec("resnet18", **change)
    with pytest.raises(SpecError, match="outputs|head"):
        rc.compile(spec)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    r = run_cli(path, "--emit", "torch", "-o", tmp_path / "m.py")
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "m.py").exists()


def test_num_classes_is_optional_only_without_a_head(tmp_path):
    spec = _spec("resnet18", outputs=["layer4"], head="none")
    del spec["num_classes"]
    assert rc.compile(spec).graph.graph["num_classes"] is None
    spec = _spec("resnet18")
    del spec["num_classes"]
    with pytest.raises(SpecError, match="missing required key 'num_classes'"):
        rc.compile(spec)


def test_check_marks_the_outputs(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(_spec("resnet18", outputs=["relu", "layer3"], head="none")))
    r = run_cli(path, "--check")
    assert r.returncode == 0, r.stderr
    assert "no classifier head" in r.stdout and "returns: relu, layer3" in r.stdout
    marked = [line.split()[0] for line in r.stdout.splitlines() if "<- output" in line]
    assert marked == ["relu", "layer3.1.act2"]
    assert "avgpool" not in r.stdout and "fc " not in r.stdout


@settings(max_examples=examples(6, most=40), deadline=None)
@given(valid_specs(max_side=64, max_stages=3), st.data())
def test_random_networks_with_random_outputs_agree_across_runtimes(tmp_path_factory, spec, data):
    """Any stage, block or stem op may be returned, with or without a head: torch's list and
    onnxruntime's named outputs agree and have the graph's shapes."""
    net = rc.compile(spec)
    names = [top.node_id for top in net.layout.stem]  # in the network's order
    for stage in net.layout.stages:
        names += [*(b.id for b in stage.blocks), stage.name]
    picks = data.draw(st.lists(st.integers(0, len(names) - 1), min_size=1, max_size=4, unique=True))
    chosen = [names[i] for i in sorted(picks)]
    head = data.draw(st.booleans())
    try:
        net = rc.compile({**spec, "outputs": chosen, **({} if head else {"head": "none"})})
    except SpecError as e:  # two names for one tensor (a one-block stage and its block)
        assert "is the same feature map as" in str(e) or "in the order the network" in str(e)
        event("refused: two names for one tensor, or out of order")
        return
    sd = init_weights(net.graph, realistic_bn=True)
    model = net.build_torch().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(x)
    graph_outputs = net.graph.graph["outputs"]
    assert [tuple(t.shape[1:]) for t in got[:len(chosen)]] == [
        net.graph.nodes[graph_outputs[n]]["shape"] for n in chosen]
    outs = _onnx(net, sd, tmp_path_factory.mktemp("rand") / "r.onnx", x)
    assert list(outs) == [*chosen, *(["logits"] if head else [])]
    for name, tensor in zip(outs, got, strict=True):
        assert rel_err(tensor, torch.from_numpy(outs[name])) < 1e-4, name
