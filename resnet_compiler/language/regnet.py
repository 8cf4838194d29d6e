"""RegNet's width generator (Radosavovic et al., "Designing Network Design Spaces", 2020), in pure
Python: per-block widths u_j = w0 + wa * j, quantised on the log scale of wm to s_j, rounded to
multiples of 8; blocks of equal width form a stage; the group width is then made compatible with
each stage's bottleneck width.

The tools that implement it disagree in the last bit, so the rounding is a choice:

- `pycls`: float64 throughout (numpy), compatibility by pycls's `adjust_block_compatibility`;
- `timm`: float32 as torch computes it (`generate_regnet`), compatibility by `quantize_float`;
- `torchvision`: the same float32 widths, compatibility by `make_divisible` (never more than 10%
  below), as torchvision's `BlockParams` and timm's `*_tv` models have it.

float32 is emulated by rounding every intermediate through `struct` (IEEE single precision, round
to nearest even), so no numpy or torch is needed and the results are those torch gives.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Literal

Rounding = Literal["pycls", "timm", "torchvision"]
ROUNDINGS: tuple[Rounding, ...] = ("pycls", "timm", "torchvision")
QUANT = 8
_F32 = struct.Struct("f")


def _f32(x: float) -> float:
    """`x` rounded to the nearest float32 (ties to even), as a Python float."""
    return _F32.unpack(_F32.pack(x))[0]


@dataclass(frozen=True)
class RegNetStage:
    width: int
    depth: int
    group_width: int
    bottle_ratio: float


def block_widths(depth: int, w0: float, wa: float, wm: float, rounding: Rounding = "pycls"
                 ) -> tuple[list[int], list[int]]:
    """The width of each of `depth` blocks and its exponent s_j."""
    if rounding == "pycls":
        exps = [round(math.log((j * wa + w0) / w0) / math.log(wm)) for j in range(depth)]
        widths = [int(round(w0 * wm ** s / QUANT) * QUANT) for s in exps]
        return widths, exps
    # torch: arange(depth) (float32) * wa + w0, log and pow in float32, python scalars cast to it
    f_w0, f_wa, f_wm = _f32(w0), _f32(wa), _f32(wm)
    log_wm = _f32(math.log(wm))
    exps, widths = [], []
    for j in range(depth):
        cont = _f32(_f32(j * f_wa) + f_w0)
        s = round(_f32(_f32(math.log(_f32(cont / f_w0))) / log_wm))
        width = _f32(f_w0 * _f32(f_wm ** s))
        exps.append(s)
        widths.append(int(round(_f32(width / QUANT)) * QUANT))
    return widths, exps


def _make_divisible(v: float, divisor: int, round_limit: float = 0.9) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


def _compatible(width: int, bottle_ratio: float, group_width: int, rounding: Rounding
                ) -> tuple[int, int]:
    """(stage width, group width) adjusted so that the bottleneck width divides into groups."""
    if rounding == "pycls":
        v = int(max(1, width * bottle_ratio))
        g = int(min(group_width, v))
        m = math.lcm(g, int(bottle_ratio)) if bottle_ratio > 1 and bottle_ratio == int(bottle_ratio) \
            else g
        v = max(m, int(round(v / m) * m))
        return int(v / bottle_ratio), g
    v = int(width * bottle_ratio)
    g = min(group_width, v)
    v = _make_divisible(v, g) if rounding == "torchvision" else int(round(v / g) * g)
    return int(v / bottle_ratio), g


def generate(depth: int, w0: float, wa: float, wm: float, group_width: int,
             bottle_ratio: float = 1.0, rounding: Rounding = "pycls") -> list[RegNetStage]:
    """The stages of a RegNet: one per distinct block width, in order."""
    widths, _ = block_widths(depth, w0, wa, wm, rounding)
    return stages_from_widths(widths, group_width, bottle_ratio, rounding)


def stages_from_widths(widths: list[int], group_width: int, bottle_ratio: float = 1.0,
                       rounding: Rounding = "pycls") -> list[RegNetStage]:
    """generate's second half, for block widths already computed (a design-space sampler has
    them from its screen): runs of equal width become stages, made group-compatible."""
    stages: list[list[int]] = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1][1] += 1
        else:
            stages.append([w, 1])
    out = []
    for w, d in stages:
        width, g = _compatible(w, bottle_ratio, group_width, rounding)
        out.append(RegNetStage(width, d, g, bottle_ratio))
    return out


def total_stages(depth: int, w0: float, wa: float, wm: float, rounding: Rounding = "pycls") -> int:
    """max(s_j) + 1: how many stages the exponents ask for (pycls keeps a design only when every
    exponent has a stage of its own)."""
    return max(block_widths(depth, w0, wa, wm, rounding)[1]) + 1


# -- the `regnet:` section of a spec ---------------------------------------------------------

SECTION_DEFAULTS: dict[str, object] = {
    "bottle_ratio": 1.0, "se_ratio": 0.0, "stem_width": 32, "rounding": "pycls",
    "shortcut": "conv", "linear_out": False, "preact": False, "num_features": 0, "names": "timm",
}
REQUIRED = ("depth", "w0", "wa", "wm", "group_width")
SHORTCUTS = ("conv", "avg", "none")
# module layouts: timm's (stem.conv, s1.b1.conv1.conv, head.fc), torchvision's (stem.0,
# trunk_output.block1.block1-0.f.a.0, fc) or pycls's (stem.conv, s1.b1.f.a, f.a_bn, head.fc), so
# each one's state_dict loads as it is
NAMES = ("timm", "torchvision", "pycls")
# what torchvision's and pycls's RegNets have no form for: RegNet-X/Y bottlenecks only
_TIMM_ONLY = {"shortcut": "conv", "linear_out": False, "preact": False, "num_features": 0}


def _number(value: object, integer: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return float(value).is_integer() if integer else math.isfinite(value)


def section_problems(section: object) -> list[tuple[tuple[str, ...], str]]:
    """(path inside the section, message) for each thing wrong with a `regnet:` mapping."""
    if not isinstance(section, dict):
        return [((), "must be a mapping: {depth, w0, wa, wm, group_width, ...}")]
    import difflib
    known = (*REQUIRED, *SECTION_DEFAULTS)
    out = []
    meant = set()  # a missing key that a misspelt one beside it stands for is reported once
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            meant.update(close)
            hint = f"; did you mean {close[0]!r}?" if close else f" (keys: {', '.join(known)})"
            out.append(((key,), f"unknown key {key!r}{hint}"))
    out += [((), f"missing required key {key!r}") for key in REQUIRED
            if key not in section and key not in meant]
    checks = {
        "depth": (lambda v: _number(v, True) and 1 <= v <= 1000, "a whole number from 1 to 1000"),
        "w0": (lambda v: _number(v, True) and v > 0 and v % QUANT == 0,
               f"a positive multiple of {QUANT}"),
        "wa": (lambda v: _number(v) and v >= 0, "a number >= 0"),
        "wm": (lambda v: _number(v) and v > 1, "a number above 1"),
        "group_width": (lambda v: _number(v, True) and v >= 1, "a whole number >= 1"),
        "bottle_ratio": (lambda v: _number(v) and v > 0, "a number above 0"),
        "se_ratio": (lambda v: _number(v) and 0 <= v < 1, "a number from 0 to below 1"),
        "stem_width": (lambda v: _number(v, True) and v >= 1, "a whole number >= 1"),
        "num_features": (lambda v: _number(v, True) and v >= 0, "a whole number >= 0"),
        "rounding": (lambda v: v in ROUNDINGS, f"one of {', '.join(ROUNDINGS)}"),
        "shortcut": (lambda v: v in SHORTCUTS, f"one of {', '.join(SHORTCUTS)}"),
        "names": (lambda v: v in NAMES, f"one of {', '.join(NAMES)}"),
        "linear_out": (lambda v: isinstance(v, bool), "true or false"),
        "preact": (lambda v: isinstance(v, bool), "true or false"),
    }
    for key, (ok, what) in checks.items():
        if key in section and not ok(section[key]):
            out.append(((key,), f"must be {what} (got {section[key]!r})"))
    if section.get("shortcut") == "avg" and not section.get("preact"):
        out.append((("shortcut",), "shortcut: avg needs preact: true (timm's average-pool"
                    " shortcut is built for pre-activation blocks here)"))
    names = section.get("names", "timm")
    if names in NAMES and names != "timm":
        out += [((key,), f"{names}'s RegNet has no {key}: {section[key]!r} (names: {names}"
                 " builds RegNet-X and RegNet-Y blocks only)")
                for key, plain in _TIMM_ONLY.items() if key in section and section[key] != plain]
    return out


def expand_section(section: dict[str, object]) -> dict[str, object]:
    """The stem, stages and head that a valid `regnet:` section stands for, named as timm's
    RegNet names its modules (stem, s1.b1, ..., final_conv, head.fc) or as torchvision's does."""
    cfg = {**SECTION_DEFAULTS, **section}
    stages = generate(int(cfg["depth"]), float(cfg["w0"]), float(cfg["wa"]), float(cfg["wm"]),
                      int(cfg["group_width"]), float(cfg["bottle_ratio"]), cfg["rounding"])
    if cfg["names"] == "torchvision":
        return _torchvision_layout(stages, int(cfg["stem_width"]), float(cfg["se_ratio"]))
    if cfg["names"] == "pycls":
        return _pycls_layout(stages, int(cfg["stem_width"]), float(cfg["se_ratio"]))
    preact = bool(cfg["preact"])
    avg = cfg["shortcut"] == "avg"
    block = ("regnet_preact_avg_bottleneck" if avg else "regnet_preact_bottleneck") if preact \
        else "regnet_bottleneck"
    stem_width = int(cfg["stem_width"])
    stem = [{"op": "conv", "name": "stem", "channels": stem_width, "kernel": 3, "stride": 2}] \
        if preact else [
        {"op": "conv", "name": "stem.conv", "channels": stem_width, "kernel": 3, "stride": 2},
        {"op": "bn", "name": "stem.bn"}, {"op": "relu", "name": "stem.act"}]
    block_params: dict[str, object] = {"se_ratio": float(cfg["se_ratio"])}
    if cfg["shortcut"] == "none":
        block_params["conv_shortcut"] = False
    if cfg["linear_out"] and not preact:
        block_params["linear_out"] = True
    out_stages = [{"block": block, "name": f"s{i + 1}", "block_names": "b{n}", "depth": s.depth,
                   "channels": s.width, "stride": 2, "group_size": s.group_width,
                   "bottle_ratio": s.bottle_ratio, **block_params}
                  for i, s in enumerate(stages)]
    features = int(cfg["num_features"])
    if features:
        pre = [{"op": "conv", "name": "final_conv.conv", "channels": features, "kernel": 1},
               {"op": "bn", "name": "final_conv.bn"}, {"op": "relu", "name": "final_conv.act"}]
    elif cfg["linear_out"] or preact:
        pre = [{"op": "relu", "name": "final_conv"}]
    else:
        pre = []
    head: dict[str, object] = {"path": "head"}
    if pre:
        head["pre"] = pre
    return {"stem": stem, "stages": out_stages, "head": head}


def _torchvision_layout(stages: list[RegNetStage], stem_width: int, se_ratio: float
                        ) -> dict[str, object]:
    """torchvision's RegNet: stem.0-2, trunk_output.block{k}.block{k}-{i}, and the default head
    (avgpool, fc)."""
    stem = [{"op": "conv", "name": "stem.0", "channels": stem_width, "kernel": 3, "stride": 2},
            {"op": "bn", "name": "stem.1"}, {"op": "relu", "name": "stem.2"}]
    out_stages = [{"block": "tv_regnet_bottleneck", "name": f"trunk_output.block{k}",
                   "block_names": f"block{k}-{{i}}", "depth": s.depth, "channels": s.width,
                   "stride": 2, "group_size": s.group_width, "bottle_ratio": s.bottle_ratio,
                   "se_ratio": se_ratio}
                  for k, s in enumerate(stages, start=1)]
    return {"stem": stem, "stages": out_stages}


def _pycls_layout(stages: list[RegNetStage], stem_width: int, se_ratio: float
                  ) -> dict[str, object]:
    """pycls's RegNet (anynet.py): stem.conv/bn/relu, s{k}.b{n} with f.a, f.a_bn, ..., proj and
    bn, and head.fc."""
    stem = [{"op": "conv", "name": "stem.conv", "channels": stem_width, "kernel": 3, "stride": 2},
            {"op": "bn", "name": "stem.bn"}, {"op": "relu", "name": "stem.relu"}]
    out_stages = [{"block": "pycls_regnet_bottleneck", "name": f"s{k}", "block_names": "b{n}",
                   "depth": s.depth, "channels": s.width, "stride": 2,
                   "group_size": s.group_width, "bottle_ratio": s.bottle_ratio,
                   "se_ratio": se_ratio}
                  for k, s in enumerate(stages, start=1)]
    return {"stem": stem, "stages": out_stages, "head": {"path": "head"}}
