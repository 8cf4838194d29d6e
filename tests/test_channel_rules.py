"""Each op's channel rule is written once (`OpDef.channels`, `OpDef.part_channels`) and serves
both the graph (ints) and the generated PyTorch constructors (source text): the text the
emitter writes, evaluated with the instance's values, is the int the graph holds."""

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from resnet_compiler.emit.channel_text import (
    Channels,
    render,
    rule_channels,
    rule_part_channels,
)
from resnet_compiler.language.expr import Expr
from resnet_compiler.ops import REGISTRY, OpDef
from resnet_compiler.ops.base import Count

counts = st.integers(1, 4096)


def _value(text: str, env: Mapping[str, int]) -> int:
    return Expr.parse(text).evaluate(env)


def test_terms_print_as_a_reviewer_writes_them() -> None:
    width, radix = Channels("width"), Channels("radix")
    assert render(width * 2) == "width * 2"
    assert render((width * radix) // radix) == "width"  # not (width * radix) // radix
    assert render(sum([width, Channels("a - b")])) == "width + (a - b)"
    assert render(Channels("out_channels") // Channels("4")) == "out_channels // 4"
    assert Channels("1") == 1 and Channels("(1)") == 1 and Channels("width") != 1


def test_every_copy_of_a_value_counts_once_or_adds_up_by_the_rule() -> None:
    every = Channels("ch", total="paths * ch")  # `name[*]` over a loop of `paths` copies
    concat, add = REGISTRY["concat"], REGISTRY["add"]
    assert rule_channels(concat, {"axis": "channels"}, [every]) == "paths * ch"
    assert rule_channels(concat, {"axis": "channels"}, ["x0", every]) == "x0 + paths * ch"
    assert rule_channels(concat, {"axis": "height"}, [every]) == "ch"
    assert rule_channels(add, {}, [every]) == "ch"


@settings(max_examples=150, deadline=None)
@given(counts, counts, counts, st.sampled_from(["channels", "height", "width"]))
def test_concat_text_is_the_graphs_sum(a: int, b: int, c: int, axis: str) -> None:
    op = REGISTRY["concat"]
    text = rule_channels(op, {"axis": axis}, ["a", "b", "c"])
    assert _value(text, {"a": a, "b": b, "c": c}) == op.channels({"axis": axis}, [a, b, c])
    if axis == "channels":
        assert op.shape({"axis": axis}, [(a, 5, 5), (b, 5, 5), (c, 5, 5)]) == (a + b + c, 5, 5)
    else:
        assert op.shape({"axis": axis}, [(a, 5, 5)] * 3)[0] == a


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 64), st.integers(1, 16), st.integers(1, 8))
def test_split_parts_text_is_the_graphs_part(width: int, radix: int, parts: int) -> None:
    op = REGISTRY["split"]
    whole = width * radix * parts
    attrs = op.resolve({"parts": parts}, [(whole, 4, 4)])
    env = {"width": width, "radix": radix, "parts": parts}
    for i in range(parts):
        text = rule_part_channels(op, {"parts": "parts"}, "width * radix * parts", i)
        assert _value(text, env) == op.part_shape(attrs, (whole, 4, 4), i)[0] == whole // parts
    assert rule_part_channels(op, {"parts": "radix"}, "width * radix", 0) == "width"


def test_split_sizes_text_and_graph_agree() -> None:
    op = REGISTRY["split"]
    attrs = op.resolve({"sizes": ["a", "b"], "sizes[0]": 24, "sizes[1]": 40}, [(64, 4, 4)])
    assert [s[0] for s in op.part_shapes(attrs, (64, 4, 4))] == [24, 40]
    assert rule_part_channels(op, {"sizes": ["w // 2", "w * 2"]}, "in_channels", 1) == "w * 2"


@settings(max_examples=150, deadline=None)
@given(counts, counts, st.integers(1, 8))
def test_conv_channels_come_from_its_field_in_graph_and_text(cin: int, cout: int, k: int) -> None:
    op = REGISTRY["conv"]
    values = {"channels": cout, "kernel": 1, "stride": 1, "padding": 0, "dilation": 1,
              "groups": 1, "bias": False}
    attrs = op.resolve(values, [(cin, 8, 8)])
    assert op.shape(attrs, [(cin, 8, 8)])[0] == cout
    code = {"channels": f"width * {k}", "kernel": "1", "stride": "1", "padding": "0",
            "dilation": "1", "groups": "1", "bias": False}
    assert _value(rule_channels(op, code, ["in_channels"]), {"width": cout}) == cout * k


def test_reduce_mul_and_default_rules_in_graph_and_text() -> None:
    reduce, mul, bn = REGISTRY["reduce"], REGISTRY["mul"], REGISTRY["bn"]
    assert reduce.shape({"over": "channels"}, [(64, 7, 7)]) == (1, 7, 7)
    assert reduce.shape({"over": "space"}, [(64, 7, 7)]) == (64, 1, 1)
    assert rule_channels(reduce, {"over": "channels"}, ["width"]) == "1"
    assert rule_channels(reduce, {"over": "space"}, ["width"]) == "width"
    # a gate of C channels on a one-channel value broadcasts it to C, as torch does
    assert mul.shape({}, [(1, 7, 7), (64, 7, 7)]) == (64, 7, 7)
    assert mul.shape({}, [(64, 7, 7), (1, 7, 7)]) == (64, 7, 7)
    assert rule_channels(mul, {}, ["1", "width"]) == "width"
    assert rule_channels(mul, {}, ["width", "1"]) == "width"
    assert rule_channels(bn, {"eps": 1e-5, "momentum": 0.1}, ["width // 4"]) == "width // 4"


class _Expand(OpDef):
    """An op written for this test: C -> expansion * C, its rule stated once."""

    kind = "expand_channels"
    sizes = {"expansion": 1}

    def channels(self, fields: Mapping[str, Any], inputs: Sequence[Count]) -> Count:
        return inputs[0] * fields["expansion"]


def test_a_new_op_states_its_channel_rule_once() -> None:
    op = _Expand()
    assert op.shape({"expansion": 4}, [(64, 8, 8)]) == (256, 8, 8)
    assert rule_channels(op, {"expansion": "expansion"}, ["in_channels"]) \
        == "in_channels * expansion"
    assert rule_channels(op, {"expansion": "4"}, ["width // 4"]) == "width // 4 * 4"


def test_op_labels_in_block_docstrings() -> None:
    assert REGISTRY["conv"].label({"kernel": Expr.parse("3")}) == "conv3x3"
    assert REGISTRY["conv"].label({"kernel": Expr.parse("k")}) == "conv"
    assert REGISTRY["std_conv"].label({"kernel": Expr.parse("3")}) == "std_conv"
    assert REGISTRY["bn"].label({}) == "bn"
    assert {k for k, op in REGISTRY.items() if op.classifier} == {"conv", "linear"}
