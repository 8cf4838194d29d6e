"""Complexity of a plain `regnet:` spec (stem, RegNet bottleneck stages, head) by arithmetic on
its generated stages, the way pycls's own `complexity()` functions count it.

The sampler uses it only to discard draws far outside a complexity window before compiling
anything (a compile costs milliseconds; this costs microseconds, and pycls's default RegNet space
needs about 95,000 draws for 500 designs in 360-400 MF). Every draw it lets through is compiled
and judged by the compiler's own counts, and each of those is compared with this estimate: the
first disagreement switches the estimate off and sampling starts over without it, so the designs
kept are always those that compiling every draw would keep.
"""

from __future__ import annotations

from typing import Any

from ..language.regnet import (
    SECTION_DEFAULTS,
    RegNetStage,
    generate,
    stages_from_widths,
)

# the spec keys and regnet: keys whose networks this arithmetic covers; anything else (a patched
# stage, another head, preact blocks) is compiled draw by draw instead
SPEC_KEYS = frozenset({"name", "input", "num_classes", "regnet", "peer"})
SECTION_KEYS = frozenset({"depth", "w0", "wa", "wm", "group_width", "bottle_ratio", "se_ratio",
                          "stem_width", "rounding", "linear_out", "num_features", "shortcut",
                          "preact"})


def applies(spec: dict[str, Any]) -> bool:
    """Whether `spec` (merged, before generators run) is a network this module can count."""
    section = spec.get("regnet")
    if not isinstance(section, dict) or not set(spec) <= SPEC_KEYS:
        return False
    if not set(section) <= SECTION_KEYS:
        return False
    cfg = {**SECTION_DEFAULTS, **section}
    return cfg["shortcut"] == "conv" and cfg["preact"] is False and isinstance(
        spec.get("num_classes"), int)


class _Tally:
    __slots__ = ("params", "macs", "flops", "acts")

    def __init__(self) -> None:
        self.params = self.macs = self.flops = self.acts = 0

    def conv(self, cin: int, cout: int, k: int, stride: int, groups: int, h: int, w: int,
             bias: bool = False) -> tuple[int, int]:
        pad = k // 2
        h = (h + 2 * pad - k) // stride + 1
        w = (w + 2 * pad - k) // stride + 1
        per = (cin // groups) * k * k
        out = cout * h * w
        self.params += cout * per + (cout if bias else 0)
        self.macs += out * per
        self.flops += out * per + (out if bias else 0)
        self.acts += out
        return h, w

    def norm(self, channels: int) -> None:
        self.params += 2 * channels

    def linear(self, cin: int, cout: int) -> None:
        self.params += cin * cout + cout
        self.macs += cin * cout
        self.flops += cin * cout + cout
        self.acts += cout

    def add(self, other: _Tally, times: int) -> None:
        self.params += other.params * times
        self.macs += other.macs * times
        self.flops += other.flops * times
        self.acts += other.acts * times

    def as_dict(self) -> dict[str, int]:
        return {"params": self.params, "macs": self.macs, "flops": self.flops, "acts": self.acts}


def estimate(spec: dict[str, Any], section: dict[str, Any], stages: list[RegNetStage]
             ) -> dict[str, int]:
    """params, macs (torchvision's), flops and acts (pycls's) of the network `spec` with this
    `regnet:` section, whose generated stages are `stages`."""
    cfg = {**SECTION_DEFAULTS, **section}
    t = _Tally()
    inp = spec["input"]
    c = int(inp["channels"])
    stem = int(cfg["stem_width"])
    h, w = t.conv(c, stem, 3, 2, 1, int(inp["height"]), int(inp["width"]))
    t.norm(stem)
    c = stem
    se_ratio = float(cfg["se_ratio"])
    for s in stages:
        h, w = _block(t, c, s, 2, se_ratio, h, w)
        if s.depth > 1:  # the blocks after the first are alike: count one, add it depth - 1 times
            rest = _Tally()
            _block(rest, s.width, s, 1, se_ratio, h, w)
            t.add(rest, s.depth - 1)
        c = s.width
    features = int(cfg["num_features"])
    if features:
        t.conv(c, features, 1, 1, 1, h, w)
        t.norm(features)
        c = features
    t.linear(c, int(spec["num_classes"]))
    return t.as_dict()


_BLOCKS: dict[tuple[Any, ...], tuple[_Tally, tuple[int, int]]] = {}


def _block(t: _Tally, c: int, s: RegNetStage, stride: int, se_ratio: float, h: int, w: int
           ) -> tuple[int, int]:
    """One regnet_bottleneck block from `c` channels at h x w added to `t`; returns its output
    size. Counted once per distinct block (draws share most of their blocks)."""
    key = (c, s.width, s.group_width, s.bottle_ratio, stride, se_ratio, h, w)
    found = _BLOCKS.get(key)
    if found is None:
        one = _Tally()
        found = one, _count_block(one, c, s, stride, se_ratio, h, w)
        if len(_BLOCKS) > 100_000:
            _BLOCKS.clear()
        _BLOCKS[key] = found
    t.add(found[0], 1)
    return found[1]


def _count_block(t: _Tally, c: int, s: RegNetStage, stride: int, se_ratio: float, h: int, w: int
                 ) -> tuple[int, int]:
    width = round(s.width * s.bottle_ratio)
    t.conv(c, width, 1, 1, 1, h, w)
    t.norm(width)
    ho, wo = t.conv(width, width, 3, stride, width // s.group_width, h, w)
    t.norm(width)
    if se_ratio > 0:
        rd = round(c * se_ratio)
        t.conv(width, rd, 1, 1, 1, 1, 1, bias=True)
        t.conv(rd, width, 1, 1, 1, 1, 1, bias=True)
    t.conv(width, s.width, 1, 1, 1, ho, wo)
    t.norm(s.width)
    if stride != 1 or c != s.width:
        t.conv(c, s.width, 1, stride, 1, h, w)
        t.norm(s.width)
    return ho, wo


def stages_of(section: dict[str, Any], widths: list[int] | None = None) -> list[RegNetStage]:
    """The generated stages of a `regnet:` section (its defaults filled in); `widths`: its block
    widths when they are known already."""
    cfg = {**SECTION_DEFAULTS, **section}
    if widths is not None:
        return stages_from_widths(widths, int(cfg["group_width"]), float(cfg["bottle_ratio"]),
                                  cfg["rounding"])
    return generate(int(cfg["depth"]), float(cfg["w0"]), float(cfg["wa"]), float(cfg["wm"]),
                    int(cfg["group_width"]), float(cfg["bottle_ratio"]), cfg["rounding"])
