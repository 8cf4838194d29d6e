"""The graph IR contract: node ids are module paths, attributes and shapes are complete."""

from __future__ import annotations

import json

import networkx as nx
import pytest
from support import ROOT, flat_text

import resnet_compiler as rc
from resnet_compiler.errors import SpecError


@pytest.fixture(scope="module")
def resnet50() -> rc.CompiledNetwork:
    return rc.compile(ROOT / "spec" / "resnet50.yaml")


def test_node_ids_are_module_paths_and_tensors_are_state_dict_keys(resnet50: rc.CompiledNetwork) -> None:
    model = resnet50.build_torch()
    modules = dict(model.named_modules())
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    from_graph = {}
    for node, data in resnet50.graph.nodes(data=True):
        if data["op"] not in ("input", "add"):
            assert node in modules, node
        for name, shape in data["tensors"].items():
            from_graph[f"{node}.{name}"] = tuple(shape)
    assert from_graph == keys


def test_node_attributes(resnet50: rc.CompiledNetwork) -> None:
    g = resnet50.graph
    conv = g.nodes["layer2.0.conv2"]
    assert {k: conv[k] for k in ("op", "in_channels", "out_channels", "kernel", "stride", "padding",
                                 "groups", "bias", "shape", "params")} == {
        "op": "conv", "in_channels": 128, "out_channels": 128, "kernel": 3, "stride": 2,
        "padding": 1, "groups": 1, "bias": False, "shape": (128, 28, 28), "params": 147_456}
    assert conv["macs"] == 128 * 28 * 28 * 128 * 9
    assert g.nodes["layer2.0.bn2"]["params"] == 256
    assert g.graph["name"] == "resnet50" and g.graph["input_shape"] == (3, 224, 224)
    assert g.graph["num_classes"] == 1000 and len(g.graph["spec_sha256"]) == 64
    assert sum(d["params"] for _, d in g.nodes(data=True)) == resnet50.total_params == 25_557_032


def test_add_knows_branch_and_shortcut(resnet50: rc.CompiledNetwork) -> None:
    g = resnet50.graph
    roles = {g.edges[u, "layer3.0.add"]["role"]: u for u in g.predecessors("layer3.0.add")}
    assert roles == {"branch": "layer3.0.bn3", "shortcut": "layer3.0.downsample.1"}
    roles = {g.edges[u, "layer3.1.add"]["role"]: u for u in g.predecessors("layer3.1.add")}
    assert roles == {"branch": "layer3.1.bn3", "shortcut": "layer3.0.act3"}
    assert nx.is_directed_acyclic_graph(g)
    assert [n for n in g if g.in_degree(n) == 0] == ["input"]
    assert [n for n in g if g.out_degree(n) == 0] == ["fc"]


def test_preactivation_projection_reads_the_normalised_input() -> None:
    g = rc.compile(ROOT / "spec" / "resnetv2_50.yaml").graph
    stage = "stages.1.blocks"
    assert list(g.predecessors(f"{stage}.0.downsample.conv")) == [f"{stage}.0.act1"]
    roles = {g.edges[u, f"{stage}.1.add"]["role"]: u for u in g.predecessors(f"{stage}.1.add")}
    assert roles["shortcut"] == f"{stage}.0.add"


def test_spec_hash_is_of_the_normalised_spec(tmp_path) -> None:
    text = flat_text(ROOT / "spec" / "resnet18.yaml")
    reformatted = tmp_path / "r18.json"
    import yaml
    reformatted.write_text(json.dumps(yaml.safe_load(text), indent=4))
    a, b = rc.compile(ROOT / "spec" / "resnet18.yaml"), rc.compile(reformatted)
    assert a.graph.graph["spec_sha256"] == b.graph.graph["spec_sha256"]
    assert a.to_torch_source() == b.to_torch_source()


def test_compile_accepts_a_dict_and_reports_dict_errors() -> None:
    spec = {"name": "tiny", "input": {"channels": 1, "height": 8, "width": 8}, "num_classes": 2,
            "stages": [{"block": "basic", "depth": 1, "channels": 4}]}
    net = rc.compile(spec)
    assert net.graph.nodes["fc"]["shape"] == (2,)
    spec["stages"][0]["depth"] = 0
    with pytest.raises(SpecError) as e:
        rc.compile(spec)
    assert str(e.value) == "<dict>: stages[0].depth: must be greater than 0 (got 0)"


def test_summary_lists_every_node_once(resnet50: rc.CompiledNetwork) -> None:
    text = resnet50.summary()
    rows = [line.split()[0] for line in text.splitlines() if line and line.split()[0] in resnet50.graph]
    assert rows == list(resnet50.graph.nodes)


def test_user_block_params_override_per_stage() -> None:
    net = rc.compile(ROOT / "examples" / "custom_block.yaml")
    g = net.graph
    assert g.nodes["layer1.0.expand"]["out_channels"] == 32  # expand_ratio 1 in stage 1
    assert g.nodes["layer2.0.expand"]["out_channels"] == 32 * 4
    assert g.nodes["layer3.0.se.fc1"]["out_channels"] == 16  # max(8, 256 // 16)
    assert "layer2.0.se" not in g


def _stem_spec(names: list[str]) -> dict:
    ops = [{"op": "conv", "channels": 8, "kernel": 3}, {"op": "bn"}, {"op": "relu"}]
    return {"name": "grouped", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 2,
            "stem": [{**op, "name": n} for op, n in zip(ops, names, strict=True)],
            "stages": [{"block": "basic", "depth": 1, "channels": 8}]}


def test_dotted_stem_names_become_one_sequential() -> None:
    net = rc.compile(_stem_spec(["stem.0", "stem.1", "stem.2"]))
    assert "self.stem = nn.Sequential(" in net.to_torch_source()
    model = net.build_torch()
    assert [n for n, _ in model.stem.named_children()] == ["0", "1", "2"]
    assert net.graph.nodes["stem.1"]["shape"] == (8, 16, 16)


@pytest.mark.parametrize("names, message", [
    (["stem.0", "stem.2", "relu"], "'stem.2': the modules under 'stem' must be numbered from 0 in order"),
    (["bn", "bn.0", "relu"], "name 'bn' is used twice at the top level"),
    (["stem.0", "bn", "stem.1"], "'stem.1': the modules under 'stem' must be consecutive"),
    (["stem.0", "stem.1", "stem.extra"], "are either all numbered or all named"),
    (["stem.0", "stem.1", "stem.x"], "'stem.x': its part 'x' is reserved"),
])
def test_dotted_stem_names_must_be_a_numbered_run(names: list[str], message: str) -> None:
    with pytest.raises(SpecError) as e:
        rc.compile(_stem_spec(names))
    assert message in str(e.value)


def test_numbered_module_groups_in_blocks_count_from_zero() -> None:
    spec = _stem_spec(["conv1", "bn1", "relu"])
    spec["blocks"] = {"mine": {"branch": [{"op": "conv", "name": "a.1", "channels": "channels",
                                           "kernel": 3}]}}
    spec["stages"] = [{"block": "mine", "depth": 1, "channels": 8}]
    with pytest.raises(SpecError) as e:
        rc.compile(spec)
    assert "block 'mine': the modules under 'a' must be numbered 0 to 0" in str(e.value)
