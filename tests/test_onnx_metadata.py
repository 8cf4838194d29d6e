"""ONNX metadata that `infer` reads: the spec's text (which rebuilds the same network, same
sha256), the input preprocessing, and class names when given."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest
from conftest import examples
from hypothesis import given, settings
from strategies import valid_specs
from support import EXAMPLE_SPECS, ROOT, SPECS

import resnet_compiler as rc
from resnet_compiler.emit.onnx import emit_onnx
from resnet_compiler.errors import UsageError
from resnet_compiler.language.preprocessing import METADATA_KEY, Preprocessing

SMALL = ROOT / "spec" / "resnet20_cifar.yaml"


def _meta(data: bytes) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}


@pytest.mark.parametrize("spec", [*SPECS, *EXAMPLE_SPECS, *sorted((ROOT / "spec" / "zoo").glob("*.yaml"))],
                         ids=lambda p: p.stem)
def test_spec_text_rebuilds_the_same_network(spec: Path) -> None:
    net = rc.compile(spec)
    text = net.graph.graph["spec_text"]
    again = rc.compile(json.loads(text))
    assert again.graph.graph["spec_sha256"] == net.graph.graph["spec_sha256"]
    assert again.graph.graph["spec_text"] == text
    assert again.to_torch_source() == net.to_torch_source()


@settings(max_examples=examples(40), deadline=None)
@given(valid_specs(max_side=256))
def test_spec_text_of_random_specs_rebuilds_them(spec: dict) -> None:
    net = rc.compile(spec)
    again = rc.compile(json.loads(net.graph.graph["spec_text"]))
    assert again.graph.graph["spec_sha256"] == net.graph.graph["spec_sha256"]
    assert again.to_torch_source() == net.to_torch_source()


def test_onnx_carries_spec_preprocessing_and_class_names(tmp_path: Path) -> None:
    net = rc.compile(ROOT / "spec" / "resnet18.yaml")
    meta = _meta(emit_onnx(net.graph))
    assert meta["spec_name"] == "resnet18"
    assert meta["spec_sha256"] == net.graph.graph["spec_sha256"]
    assert rc.compile(json.loads(meta["spec_text"])).graph.graph["spec_sha256"] \
        == meta["spec_sha256"]
    canonical = json.dumps(json.loads(meta["spec_text"]), sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256(canonical.encode()).hexdigest() == meta["spec_sha256"]
    pre = Preprocessing.from_json(meta[METADATA_KEY])
    assert pre == Preprocessing.from_spec(net.spec)
    assert (pre.channels, pre.height, pre.width) == (3, 224, 224)
    assert "class_names" not in meta

    small = rc.compile(SMALL)
    names = [f"class {i}" for i in range(10)]
    path = tmp_path / "m.onnx"
    small.to_onnx(path, class_names=names)
    assert json.loads(_meta(path.read_bytes())["class_names"]) == names
    with pytest.raises(UsageError, match="3 given, the network has 10 classes"):
        small.to_onnx(tmp_path / "bad.onnx", class_names=["a", "b", "c"])
    assert not (tmp_path / "bad.onnx").exists()


def test_graph_json_carries_them_too() -> None:
    attrs = json.loads(rc.compile(SMALL).to_graph_json())["graph"]
    assert json.loads(attrs["spec_text"])["name"] == "resnet20_cifar"
    assert json.loads(attrs["preprocessing"])["height"] == 32
