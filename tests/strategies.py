"""Hypothesis strategies for specs as plain dicts: valid ones, and mutations that must be refused.

Valid specs cover every built-in block, a block and a shortcut defined in the spec itself, every
stem and shortcut kind, stride patterns, groups, SE, conv bias, zero-init and input sizes from 1x1
to large. Channel counts stay small so that building and running the torch module stays cheap.
Invalid specs are single mutations of valid ones; each knows which spec paths the error may name.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

BUILTIN_BLOCKS = ("basic", "bottleneck", "resnext", "preact_basic", "preact_bottleneck")
USER_BLOCK = "twin"
USER_SHORTCUT = "pool_proj"
MESH_BLOCK = "mesh"  # a random small graph of the multi-path ops, drawn per spec
COMPOSED_BLOCK = "composed"  # a block calling a module with a loop, drawn per spec
BLOCKS = (*BUILTIN_BLOCKS, USER_BLOCK, MESH_BLOCK, COMPOSED_BLOCK)
SHORTCUTS = ("conv_bn", "conv", "avgpool_conv_bn", "conv_only", USER_SHORTCUT)
STEMS = ("imagenet", "small", "deep", "none")
NORMS = ("bn", "frozen_bn", {"op": "gn", "groups": 1}, {"op": "gn", "channels_per_group": 1},
         "frn", {"op": "frn", "apply_act": False}, {"op": "evonorm_s0", "groups": 1},
         {"op": "evonorm_s0", "channels_per_group": 1, "apply_act": False})
ACT_FNS = ("relu", "relu6", "leaky_relu", "elu", "silu", "gelu", "gelu_tanh", "hardswish",
           "hardsigmoid", "sigmoid", "tanh", "mish")

# A user block in the spec language: a `k`x`k` conv widened by `mid`, a grouped 1x1 back to
# `channels`, optional SE, and the spec's own shortcut (max pool does the striding).
USER_LIBRARY: dict[str, Any] = {
    "blocks": {
        USER_BLOCK: {
            "class_name": "TwinBlock",
            "params": {"k": 3, "mid": 2, "g": 1, "se": False},
            "vars": {"hidden": "channels * mid"},
            "out_channels": "channels",
            "shortcut": USER_SHORTCUT,
            "branch": [
                {"op": "conv", "name": "wide", "channels": "hidden", "kernel": "k",
                 "stride": "stride"},
                {"op": "bn", "name": "wide_bn", "eps": 0.001},
                {"op": "relu"},
                {"op": "conv", "name": "narrow", "channels": "out_channels", "kernel": 1,
                 "groups": "g"},
                {"op": "bn", "name": "narrow_bn", "momentum": 0.05},
                {"op": "se", "when": "se", "channels": "max(2, out_channels // 2)"},
            ],
            "post": [{"op": "relu", "name": "out_act"}],
        },
    },
    "shortcuts": {
        USER_SHORTCUT: [
            {"op": "maxpool", "kernel": "stride", "stride": "stride", "padding": 0,
             "ceil_mode": True},
            {"op": "conv", "channels": "out_channels", "kernel": 1, "bias": True},
            {"op": "bn"},
        ],
    },
}


def stem_ops(kind: str, channels: int) -> list[dict[str, Any]]:
    """The four stem kinds: ImageNet 7x7/2 + max pool, 3x3 small-image, deep 3-conv, none."""
    if kind == "imagenet":
        return [{"op": "conv", "name": "conv1", "channels": channels, "kernel": 7, "stride": 2},
                {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "relu"},
                {"op": "maxpool", "name": "maxpool", "kernel": 3, "stride": 2, "padding": 1}]
    if kind == "small":
        return [{"op": "conv", "name": "conv1", "channels": channels, "kernel": 3},
                {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "relu"}]
    if kind == "deep":
        half = max(1, channels // 2)
        return [{"op": "conv", "name": "stem_conv1", "channels": half, "kernel": 3, "stride": 2},
                {"op": "bn", "name": "stem_bn1"}, {"op": "relu", "name": "stem_act1"},
                {"op": "conv", "name": "stem_conv2", "channels": half, "kernel": 3},
                {"op": "bn", "name": "stem_bn2"}, {"op": "relu", "name": "stem_act2"},
                {"op": "conv", "name": "conv1", "channels": channels, "kernel": 3},
                {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "act1"},
                {"op": "maxpool", "name": "maxpool", "kernel": 3, "stride": 2, "padding": 1}]
    return []


@st.composite
def multipath_block(draw: st.DrawFn) -> dict[str, Any]:
    """A random block that is a graph of named values: splits, concatenations, sums, channel and
    spatial gates, radix softmaxes and reductions, every value used. Maps are `channels` wide
    (full) or half that (half); gates are Cx1x1 or 1xHxW."""
    ops: list[dict[str, Any]] = [{"op": "conv", "name": "v0", "input": "x", "channels": "channels",
                                  "kernel": draw(st.sampled_from([1, 3])), "stride": "stride"}]
    kinds = {"v0": "full"}
    used: set[str] = set()

    def pick(kind: str) -> str | None:
        names = sorted(n for n, k in kinds.items() if k == kind)
        return draw(st.sampled_from(names)) if names else None

    def emit(op: dict[str, Any], kind: str) -> str:
        name = f"v{len(ops)}"
        for ref in [op["input"]] if isinstance(op["input"], str) else op["input"]:
            used.add(ref.partition("[")[0])
        ops.append({"name": name, **op})
        kinds[name] = kind
        return name

    for _ in range(draw(st.integers(1, 7))):
        step = draw(st.sampled_from(["split", "concat", "add", "gate", "spatial", "softmax",
                                     "conv", "act"]))
        full, half = pick("full"), pick("half")
        if step == "split" and full:
            name = emit({"op": "split", "input": full, "parts": 2}, "split")
            for i in range(2):
                emit({"op": "act", "input": f"{name}[{i}]", "fn": "relu"}, "half")
        elif step == "concat" and half:
            other = pick("half")
            emit({"op": "concat", "input": [half, other]}, "full")
        elif step == "add" and full:
            emit({"op": "add", "input": [full, pick("full"), *([pick("full")] * draw(
                st.integers(0, 1)))]}, "full")
        elif step == "gate" and full:
            pooled = emit({"op": "reduce", "input": full, "mode": draw(st.sampled_from(
                ["mean", "max", "sum"]))}, "gate")
            gate = emit({"op": "act", "input": pooled, "fn": "sigmoid"}, "gate")
            emit({"op": "mul", "input": [pick("full"), gate]}, "full")
        elif step == "spatial" and full:
            pooled = emit({"op": "reduce", "input": full, "over": "channels",
                           "mode": draw(st.sampled_from(["mean", "max"]))}, "spatial")
            emit({"op": "mul", "input": [full, pooled]}, "full")
        elif step == "softmax" and full:
            pooled = emit({"op": "reduce", "input": full}, "gate")
            weights = emit({"op": "softmax", "input": pooled, "radix": 2}, "gate")
            parts = emit({"op": "split", "input": weights, "parts": 2}, "split")
            halves = emit({"op": "split", "input": full, "parts": 2}, "split")
            mixed = [emit({"op": "mul", "input": [f"{halves}[{i}]", f"{parts}[{i}]"]}, "half")
                     for i in range(2)]
            emit({"op": "add", "input": mixed}, "half")
        elif step == "conv":
            source = draw(st.sampled_from([n for n in (full, half) if n]))
            emit({"op": "conv", "input": source, "channels": "channels", "kernel": 1}, "full")
        elif step == "act" and full:
            emit({"op": "act", "input": full, "fn": draw(st.sampled_from(["relu", "silu"]))},
                 "full")
    # every value is used: half maps widen, whatever is left is summed into the output
    for name, kind in list(kinds.items()):
        if name not in used and kind == "half":
            emit({"op": "conv", "input": name, "channels": "channels", "kernel": 1}, "full")
    left = [n for n, k in kinds.items() if n not in used and k == "full"]
    last = emit({"op": "add", "input": left}, "full") if len(left) > 1 else left[0]
    ops.append({"op": "bn", "name": "out_bn", "input": last})
    for op in ops:
        op.setdefault("op", "act")
    return {"class_name": "MeshBlock", "out_channels": "channels", "branch": ops,
            "post": [{"op": "relu", "name": "out_act"}]}


@st.composite
def composed_block(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A module with a loop over `paths` (each copy a conv of its own dilation, then a fan-in
    by add or concat), and a block that calls it: with the residual implied (`branch:`) or
    written out (`ops:`: a conv named downsample, or no residual where the shape changes), and a
    conditional add of an earlier value whose inputs come in either order."""
    fan_in = draw(st.sampled_from(["add", "concat"]))
    module_ops: list[dict[str, Any]] = [
        {"repeat": "paths", "ops": [
            {"op": "conv", "name": "convs", "input": "x", "channels": "in_channels",
             "kernel": "k", "dilation": "i + 1"},
            {"op": "act", "name": "acts", "fn": "relu"}]},
        {"op": fan_in, "name": "joined", "input": "acts[*]"}]
    if fan_in == "concat":
        module_ops.append({"op": "conv", "name": "proj", "channels": "in_channels", "kernel": 1})
    if draw(st.booleans()):  # a gate on the fan-in, as the attention modules have
        module_ops += [{"op": "reduce", "name": "pooled", "mode": "mean"},
                       {"op": "act", "name": "gate", "fn": "sigmoid"},
                       {"op": "mul", "name": "gated",
                        "input": ["proj" if fan_in == "concat" else "joined", "gate"]}]
    module = {"class_name": "PathsMix", "params": {"paths": 2, "k": 3}, "ops": module_ops}
    inner = ["act1", "bn2"] if draw(st.booleans()) else ["bn2", "act1"]
    ops: list[dict[str, Any]] = [
        {"op": "conv", "name": "conv1", "channels": "channels", "kernel": 3, "stride": "stride"},
        {"op": "bn", "name": "bn1"},
        {"op": "relu", "name": "act1"},
        {"op": "paths_mix", "name": "mix", "paths": "paths", "k": draw(st.sampled_from([1, 3]))},
        {"op": "bn", "name": "bn2"},
        {"op": "add", "name": "inner_sum", "input": inner,
         "when": draw(st.sampled_from(["block_index < 1", "block_index > 0", "True"]))},
    ]
    block: dict[str, Any] = {"class_name": "ComposedBlock", "params": {"paths": 2},
                             "out_channels": "channels"}
    form = draw(st.sampled_from(["branch", "downsample", "no_residual"]))
    if form == "branch":
        block.update(branch=ops, post=[{"op": "relu", "name": "out_act"}])
    elif form == "downsample":
        block["ops"] = [*ops,
                        {"op": "conv", "name": "downsample", "input": "x",
                         "channels": "out_channels", "kernel": 1, "stride": "stride",
                         "when": "stride != 1 or in_channels != out_channels"},
                        {"op": "add", "name": "add", "input": ["inner_sum", "downsample"]},
                        {"op": "relu", "name": "out_act"}]
    else:
        block["ops"] = [*ops,
                        {"op": "add", "name": "add", "input": ["inner_sum", "x"],
                         "when": "stride == 1 and in_channels == out_channels"},
                        {"op": "relu", "name": "out_act"}]
    return {"paths_mix": module}, block


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def block_params(draw: st.DrawFn, block: str, channels: int) -> dict[str, Any]:
    """Per-stage overrides of a block's params that keep the block well-formed."""
    out: dict[str, Any] = {}
    if block == MESH_BLOCK:
        return out
    if block == COMPOSED_BLOCK:
        if draw(st.booleans()):
            out["paths"] = draw(st.integers(1, 3))
        return out
    if draw(st.booleans()):
        out["se"] = draw(st.booleans())
        if block != USER_BLOCK and draw(st.booleans()):
            out["se_ratio"] = draw(st.sampled_from([2, 4, 16]))
    if block in ("bottleneck", "preact_bottleneck"):
        if draw(st.booleans()):
            out["expansion"] = draw(st.sampled_from([1, 2, 4]))
        if draw(st.booleans()):
            out["groups"] = draw(st.sampled_from([1, 2, 4]))
        if draw(st.booleans()):
            out["base_width"] = draw(st.sampled_from([16, 32, 64, 128]))
    elif block == "resnext":
        bot_mul = draw(st.sampled_from([0.5, 1.0, 2.0]))
        if bot_mul != 1.0 or draw(st.booleans()):
            out["bot_mul"] = bot_mul
        bot = int(round(channels * bot_mul))
        out["group_width"] = draw(st.sampled_from(_divisors(bot)))
    elif block == USER_BLOCK:
        if draw(st.booleans()):
            out["k"] = draw(st.sampled_from([1, 3, 5]))
        if draw(st.booleans()):
            out["mid"] = draw(st.integers(1, 3))
        if draw(st.booleans()):
            out["g"] = draw(st.sampled_from(_divisors(channels)))
    return out


@st.composite
def valid_specs(draw: st.DrawFn, max_side: int = 300, max_stages: int = 4) -> dict[str, Any]:
    """A valid spec dict. Channels are multiples of 4 up to 16, so torch runs stay cheap."""
    stem = draw(st.sampled_from(STEMS))
    stem_channels = draw(st.sampled_from([4, 8, 12, 16]))
    side = st.one_of(*(st.integers(lo, min(hi, max_side)) for lo, hi in
                       ((1, 8), (9, 64), (65, max_side)) if lo <= max_side))
    spec: dict[str, Any] = {
        "name": draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)),
        "input": {"channels": draw(st.sampled_from([1, 3, 4])), "height": draw(side),
                  "width": draw(side)},
        "num_classes": draw(st.integers(1, 20)),
        "stem": stem_ops(stem, stem_channels),
    }
    defaults: dict[str, Any] = {}
    if draw(st.booleans()):
        defaults["conv_bias"] = True
    if draw(st.booleans()):
        defaults["zero_init_last_bn"] = True
    if draw(st.integers(0, 5)) == 0:
        defaults["se"] = True  # a block param set for every stage
    if draw(st.integers(0, 4)) == 0:
        defaults["shortcut"] = draw(st.sampled_from(SHORTCUTS))
    # layer choices: every norm, activation, conv and attention the op table has
    if draw(st.integers(0, 2)) == 0:
        defaults["norm"] = draw(st.sampled_from(NORMS))
    if draw(st.integers(0, 3)) == 0:
        defaults["act"] = draw(st.sampled_from(ACT_FNS))
    if draw(st.integers(0, 5)) == 0:
        defaults["conv"] = "std_conv"
    if draw(st.integers(0, 4)) == 0:
        defaults["attn"] = draw(st.sampled_from(["eca", {"op": "se", "ratio": 0.5},
                                                 {"op": "se", "act": "silu", "gate": "hard_sigmoid"}]))
        defaults["se"] = True
    if draw(st.integers(0, 4)) == 0:
        defaults["drop_path_rate"] = 0.2
    if draw(st.integers(0, 5)) == 0:
        defaults["aa"] = "avg"

    h, w = spec["input"]["height"], spec["input"]["width"]
    if min(h, w) >= 4 and draw(st.integers(0, 4)) == 0:  # reflect padding needs room
        spec["stem"] = [{"op": "blurpool", "name": "blur", "stride": draw(st.sampled_from([1, 2]))},
                        *spec["stem"]]
    if draw(st.integers(0, 5)) == 0:
        spec["stem"] = [{"op": "pad", "name": "pad", "padding": draw(st.sampled_from([1, [0, 1, 2, 0]]))},
                        *spec["stem"]]
    if draw(st.integers(0, 4)) == 0:
        spec["output_stride"] = draw(st.sampled_from([8, 16]))
    stages = []
    preact = False
    uses_user = False
    for si in range(draw(st.integers(1, max_stages))):
        block = draw(st.sampled_from(BLOCKS))
        channels = draw(st.sampled_from([4, 8, 12, 16]))
        stage: dict[str, Any] = {"block": block, "depth": draw(st.integers(1, 2)),
                                 "channels": channels}
        stride = draw(st.sampled_from([1, 1, 2, 2, 3]))
        if stride != 1 or draw(st.booleans()):
            stage["stride"] = stride
        if draw(st.integers(0, 3)) == 0:
            stage["shortcut"] = draw(st.sampled_from(SHORTCUTS))
        if draw(st.integers(0, 5)) == 0:
            stage["name"] = f"stage_{si}"
        if draw(st.integers(0, 6)) == 0:
            stage["dilation"] = draw(st.sampled_from([1, 2]))
        stage.update(draw(block_params(block, channels)))
        stages.append(stage)
        preact = block.startswith("preact")
        uses_user = uses_user or block == USER_BLOCK or stage.get("shortcut") == USER_SHORTCUT
    uses_user = uses_user or defaults.get("shortcut") == USER_SHORTCUT
    if uses_user or draw(st.booleans()):
        spec.update(copy.deepcopy(USER_LIBRARY))
    if any(stage["block"] == MESH_BLOCK for stage in stages):
        spec.setdefault("blocks", {})[MESH_BLOCK] = draw(multipath_block())
    if any(stage["block"] == COMPOSED_BLOCK for stage in stages):
        modules, composed = draw(composed_block())
        spec["modules"] = modules
        spec.setdefault("blocks", {})[COMPOSED_BLOCK] = composed
    if draw(st.integers(0, 6)) == 0:  # a built-in module in every block's attention slot
        defaults["attn"] = "cbam"
    if not any(stage["block"] in (*BUILTIN_BLOCKS, USER_BLOCK) for stage in stages) and any(
            stage["block"] == COMPOSED_BLOCK for stage in stages):
        defaults.pop("se", None)  # no block in use takes it (the composed block has params)
    spec["stages"] = stages
    even = all(side % 64 == 0 for side in (h, w)) and all(st_.get("stride", 1) <= 2
                                                          for st_ in stages)
    if defaults.get("aa") and not even:  # a 2x2 pool floors odd sizes that the shortcut keeps
        del defaults["aa"]
    if defaults:
        spec["defaults"] = defaults

    pre = [{"op": "bn", "name": "norm"}, {"op": "relu", "name": "act"}] if preact else []
    if draw(st.integers(0, 3)) == 0:  # the head as a list of ops
        spec["head"] = [*pre, {"op": "global_pool", "name": "head.global_pool",
                               "mode": draw(st.sampled_from(["avg", "max"]))},
                        {"op": "flatten", "name": "head.flatten"},
                        *([{"op": "dropout", "name": "head.drop", "p": 0.25}]
                          if draw(st.booleans()) else []),
                        *(["pre_logits"] if draw(st.booleans()) else []),
                        {"op": "linear", "name": "head.fc"}]
        return spec
    head: dict[str, Any] = {}
    if pre:  # pre-activation nets end with BN-ReLU before pooling
        head["pre"] = pre
    if draw(st.booleans()):
        head["pool"] = draw(st.sampled_from(["avg", "max"]))
    if draw(st.integers(0, 3)) == 0:
        head["dropout"] = 0.25
    if head:
        spec["head"] = head
    return spec


# ---- invalid specs ------------------------------------------------------------------------------

@dataclass
class Mutation:
    """A broken spec and the spec paths an error about it may name (or their parents/children)."""

    spec: dict[str, Any]
    kind: str
    paths: tuple[str, ...]


def fmt_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _get(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _int_leaves(spec: dict[str, Any], positive_only: bool) -> list[tuple[str | int, ...]]:
    """Paths of integers whose every value below 1 (or below 0) is invalid."""
    paths: list[tuple[str | int, ...]] = [("input", k) for k in ("channels", "height", "width")]
    paths.append(("num_classes",))
    for i, stage in enumerate(spec["stages"]):
        paths += [("stages", i, "depth"), ("stages", i, "channels")]
        if "stride" in stage:
            paths.append(("stages", i, "stride"))
        for key in ("expansion", "base_width", "groups", "mid", "k"):
            if key in stage:
                paths.append(("stages", i, key))
    for i, op in enumerate(spec.get("stem", [])):
        for key in ("channels", "kernel", "stride"):
            if isinstance(op.get(key), int):
                paths.append(("stem", i, key))
        if not positive_only and isinstance(op.get("padding"), int):
            paths.append(("stem", i, "padding"))
    return paths


def _mappings(spec: dict[str, Any]) -> list[tuple[str | int, ...]]:
    """Paths of mappings whose keys are checked (not `defaults`, whose extras are block params)."""
    paths: list[tuple[str | int, ...]] = [(), ("input",)]
    paths += [("stages", i) for i in range(len(spec["stages"]))]
    paths += [("stem", i) for i in range(len(spec.get("stem", [])))]
    if "head" in spec:
        paths.append(("head",))
    if "blocks" in spec:
        paths += [("blocks", USER_BLOCK), ("blocks", USER_BLOCK, "branch", 0)]
    return paths


_REQUIRED = {
    (): ("name", "input", "num_classes", "stages"),
    ("input",): ("channels", "height", "width"),
}
_STAGE_REQUIRED = ("block", "depth", "channels")
_NOT_INTEGERS = [math.nan, math.inf, -math.inf, True, False, 2.5, 8.0, "eight", None, [4], {"n": 4}]
_BAD_STRINGS = ["", "1abc", "has space", "semi;colon", "quote'd", 'dq"x', "new\nline", "__import__",
                "__class__", "a" * 65, 7, ["x"], "forward", "class"]
_UNKNOWN_KEYS = ["chanels", "strde", "depht", "kernal", "blok", "widht", "zzz", "num_clases"]


@st.composite
def invalid_specs(draw: st.DrawFn) -> Mutation:
    """One mutation of a valid spec that the compiler must refuse."""
    spec = draw(valid_specs(max_side=64, max_stages=3))
    if isinstance(spec.get("head"), list):  # mutations edit the head's mapping form
        spec["head"] = {}
    bad = copy.deepcopy(spec)
    kind = draw(st.sampled_from(["wrong_type", "negative", "zero", "float_size", "unknown_key",
                                 "missing_key", "bad_name", "shape_break", "groups",
                                 "unknown_block", "bad_float"]))
    if kind in ("wrong_type", "negative", "zero", "float_size"):
        path = draw(st.sampled_from(_int_leaves(spec, positive_only=kind != "negative")))
        not_integers = [v for v in _NOT_INTEGERS
                        if not (v is None and path[0] == "stem" and path[-1] == "stride")
                        and not (v == [4] and path[0] == "stages" and path[-1] == "channels")]
        # (a stem pool's stride may be null: the kernel; a stage's channels a list of widths)
        value = {"wrong_type": st.sampled_from(not_integers),
                 "negative": st.integers(-10**6, -1),
                 "zero": st.just(0),
                 "float_size": st.sampled_from([0.5, 3.5, 16.0, 1e3])}[kind]
        new = draw(value)
        _get(bad, path[:-1])[path[-1]] = new
        return Mutation(bad, kind, (fmt_path(path),))
    if kind == "unknown_key":
        path = draw(st.sampled_from(_mappings(spec)))
        key = draw(st.sampled_from(_UNKNOWN_KEYS))
        _get(bad, path)[key] = 1
        return Mutation(bad, kind, (fmt_path((*path, key)),))
    if kind == "missing_key":
        options = [(p, k) for p, keys in _REQUIRED.items() for k in keys]
        options += [(("stages", i), k) for i in range(len(spec["stages"])) for k in _STAGE_REQUIRED]
        options += [(("stem", i), k) for i, op in enumerate(spec["stem"]) for k in ("op", "kernel")
                    if k in op]
        path, key = draw(st.sampled_from(options))
        del _get(bad, path)[key]
        return Mutation(bad, kind, (fmt_path((*path, key)),))
    if kind == "bad_name":
        where = draw(st.sampled_from(["name", "stage", "op", "fc", "class"]))
        name = draw(st.sampled_from(_BAD_STRINGS))
        if where == "name":
            bad["name"] = {"forward": "-dash", "class": "x y"}.get(name, name) if isinstance(
                name, str) else name
            return Mutation(bad, kind, ("name",))
        if where == "stage":
            bad["stages"][0]["name"] = name
            return Mutation(bad, kind, ("stages[0].name",))
        if where == "fc":
            bad.setdefault("head", {})["fc"] = name
            return Mutation(bad, kind, ("head.fc",))
        if where == "class":
            bad.update(copy.deepcopy(USER_LIBRARY))
            bad["blocks"][USER_BLOCK]["class_name"] = name
            return Mutation(bad, kind, (f"blocks.{USER_BLOCK}.class_name",))
        bad["stem"] = [{"op": "relu", "name": name}, *bad["stem"]]
        return Mutation(bad, kind, ("stem[0].name",))
    if kind == "shape_break":
        h = spec["input"]["height"]
        choice = draw(st.sampled_from(["kernel", "stride_pool", "branch_padding"]))
        if choice == "kernel":  # a valid conv window larger than the (unpadded) input
            bad["stem"] = [{"op": "conv", "channels": 4, "kernel": h + draw(st.integers(1, 5)),
                            "padding": 0}, *bad["stem"]]
            return Mutation(bad, kind, ("stem[0]",))
        if choice == "stride_pool":  # a max pool window that cannot fit without ceil_mode
            bad["stem"] = [{"op": "maxpool", "kernel": h + 1, "stride": 1, "padding": 0},
                           *bad["stem"]]
            return Mutation(bad, kind, ("stem[0]",))
        # the user block's branch loses its padding: it shrinks, the identity shortcut does not
        bad.update(copy.deepcopy(USER_LIBRARY))
        bad["blocks"][USER_BLOCK]["branch"][0]["padding"] = 0
        bad["stages"][0] = {"block": USER_BLOCK, "depth": 1, "channels": 8, "k": 3}
        return Mutation(bad, kind, ("stages[0]", "stem"))
    if kind == "groups":  # groups that divide neither the input nor the output channels
        c = spec["input"]["channels"]
        bad["stem"] = [{"op": "conv", "channels": 4 * (c + 1), "kernel": 3, "groups": c + 1},
                       *bad["stem"]]
        return Mutation(bad, kind, ("stem[0]",))
    if kind == "unknown_block":
        i = draw(st.integers(0, len(spec["stages"]) - 1))
        bad["stages"][i]["block"] = draw(st.sampled_from(["basik", "bottle_neck", "resnet", "X"]))
        return Mutation(bad, kind, (f"stages[{i}].block", f"stages[{i}]"))
    # bad_float: dropout outside [0, 1) or not a number
    value = draw(st.sampled_from([1.0, 1.5, -0.1, math.nan, math.inf, "half"]))
    bad.setdefault("head", {})["dropout"] = value
    return Mutation(bad, kind, ("head.dropout",))
