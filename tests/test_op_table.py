"""The op table: every op kind has every part, and the random-spec strategies produce each one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from strategies import valid_specs

import resnet_compiler as rc
from resnet_compiler.ops import REGISTRY, SPEC_OPS, InitOptions, OpDef

PARTS = ("shape", "torch_module", "onnx")


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_every_op_defines_every_part(kind: str) -> None:
    op = REGISTRY[kind]
    assert op.kind == kind
    for part in PARTS:
        overridden = getattr(type(op), part) is not getattr(OpDef, part)
        assert overridden or part == "shape", f"{kind}: no {part}"
    # an op with state_dict tensors knows how to initialise them
    if type(op).tensors is not OpDef.tensors:
        assert type(op).init is not OpDef.init, f"{kind}: tensors but no initialisation"
    if op.model is not None:
        assert op.model.model_fields["op"].annotation.__args__ == (kind,)
        assert op.model.__doc__ or kind == "relu"
    for field in op.sizes:
        assert op.model is None or field in op.model.model_fields, f"{kind}: size {field!r}"


def test_every_node_of_a_preset_is_initialised_by_its_op() -> None:
    net = rc.compile("spec/seresnet50.yaml")
    rng = np.random.default_rng(0)
    for node, data in net.graph.nodes(data=True):
        op = REGISTRY[data["op"]]
        values = op.init(data, data["tensors"], rng, InitOptions())
        assert {k: v.shape for k, v in values.items()} == dict(data["tensors"].items()), node
        assert data["params"] == op.params(data, data["tensors"])


def test_random_specs_produce_every_op_in_the_table() -> None:
    """A new op must reach the property tests: the strategies produce every op kind."""
    seen: set[str] = set()

    @settings(max_examples=400, database=None, derandomize=True)
    @given(valid_specs(max_side=64))
    def collect(spec: dict[str, Any]) -> None:
        try:
            net = rc.compile(spec)
        except rc.SpecError:
            return
        seen.update(d["op"] for _, d in net.graph.nodes(data=True))

    collect()
    assert seen == set(REGISTRY), f"never produced: {sorted(set(REGISTRY) - seen)}"


def test_spec_ops_are_exactly_the_ops_with_a_spec_model() -> None:
    assert set(SPEC_OPS) == {k for k, op in REGISTRY.items() if op.model is not None}
    assert {"conv", "bn", "relu", "maxpool", "avgpool", "channel_conv"} <= set(SPEC_OPS)
