"""Layer choices, as timm's norm_layer/act_layer/aa_layer/attn_layer: which op (or module)
replaces bn, relu, conv and fills the anti-aliasing and attention slots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..messages import did_you_mean
from ..ops import SPEC_OPS

LAYER_SETTINGS = {"norm": "bn", "act": "relu", "conv": "conv", "aa": "anti_alias", "attn": "se"}
# What the short names of anti-aliasing layers stand for (timm's aa_layer='avg' / 'blur').
AA_LAYERS = {"avg": {"op": "avgpool", "kernel": "stride", "stride": "stride"},
             "blur": {"op": "blurpool", "stride": "stride"}}


# What users of torch and timm call the ops (for did-you-mean where spelling is no guide).
OP_ALIASES = {"group_norm": "gn", "groupnorm": "gn", "batch_norm": "bn", "batchnorm": "bn",
              "batchnorm2d": "bn", "frozen_batch_norm": "frozen_bn", "conv2d": "conv",
              "std_conv2d": "std_conv", "avg_pool": "avgpool", "max_pool": "maxpool",
              "blur_pool": "blurpool", "squeeze_excite": "se", "seblock": "se"}


def layer_mapping(setting: str, choice: Any, fail: Any,
                   modules: Mapping[str, Any]) -> dict[str, Any]:
    """A layer choice as an op mapping: `gn` -> {op: gn}, `silu` -> {op: act, fn: silu},
    `blur` -> the blur pool, `cbam` -> the module (attention only), a mapping as it is (name and
    when are the replaced op's)."""
    kinds = [*SPEC_OPS, *modules]
    if isinstance(choice, dict):
        data = dict(choice)
    elif setting == "aa" and choice in AA_LAYERS:
        data = dict(AA_LAYERS[choice])
    elif choice in SPEC_OPS or choice in modules:
        data = {"op": choice}
    elif setting == "act":
        data = {"op": "act", "fn": choice}
    else:
        raise fail(f"{choice!r} is not an op (ops: {', '.join(kinds)}){did_you_mean(choice, kinds)}")
    kind = data.get("op")
    if kind not in SPEC_OPS and kind not in modules:
        alias = OP_ALIASES.get(str(kind).lower().replace("-", "_"))
        hint = f"; did you mean {alias!r}?" if alias else did_you_mean(str(kind), kinds)
        raise fail(f"unknown op {kind!r}{hint}")
    for key in ("name", "when"):
        if key in data:
            raise fail(f"a layer choice takes no {key!r}: it is the replaced op's")
    return data


def freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value
