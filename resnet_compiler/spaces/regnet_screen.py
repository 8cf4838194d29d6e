"""pycls's RegNet stage rule for a whole batch of draws at once (numpy), where it is certain.

Most draws of pycls's RegNet space fail the rule (78% at the default ranges); evaluating it draw by
draw in Python costs more than everything else the sampler does. Here the exponents
s_j = round(log(u_j / w0) / log(wm)) and widths round(w0 * wm^s / 8) * 8 are computed for the
batch in float64, as pycls computes them. numpy's log and pow may differ from Python's in the last
bit, which can only matter where a value lies within rounding distance of a .5 tie; such rows are
left undecided (None) and go through the generator itself, so every verdict given here is the one
`regnet.block_widths` gives. For timm's and torchvision's float32 rounding the margin around a tie
is wider, by the most float32 arithmetic can move a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..language.regnet import QUANT, SECTION_DEFAULTS

TIE = 1e-9  # how near a .5 tie a value may be before the row is left to the generator
# timm's and torchvision's widths are computed in float32 (about 7 digits): a chain of a few
# float32 roundings moves an exponent's ratio by far less than 1e-4 and a width/8 by far less
# than 1e-5 of itself, so a float64 value at least that far from a tie rounds the same way
F32_RATIO_TIE, F32_WIDTH_TIE = 1e-4, 1e-5
KEYS = ("depth", "w0", "wa", "wm")


class Screened:
    """A batch's verdicts, and the block widths of each decided row (what the generator gives)."""

    def __init__(self, verdicts: list[tuple[str | None, int] | None], widths: np.ndarray | None = None,
                 depths: list[int] | None = None):
        self.verdicts, self._widths, self._depths = verdicts, widths, depths

    def block_widths(self, i: int) -> list[int] | None:
        if self._widths is None or self._depths is None or self.verdicts[i] is None:
            return None
        return self._widths[i, :self._depths[i]].astype(np.int64).tolist()


def screen(section: Mapping[str, Any], sampled: Mapping[str, Sequence[Any]], n: int) -> Screened:
    """Per draw: (reason, stages) as Sampler.regnet_rule gives it, or None (left undecided).
    `section`: the base `regnet:` section; `sampled`: its sampled keys' values for the batch."""
    undecided_all = Screened([None] * n)
    cfg = {**SECTION_DEFAULTS, **section}
    if "rounding" in sampled or cfg["rounding"] not in ("pycls", "timm", "torchvision"):
        return undecided_all
    ratio_tie, width_tie = (TIE, TIE) if cfg["rounding"] == "pycls" else (F32_RATIO_TIE, F32_WIDTH_TIE)
    try:
        cols = {k: np.asarray(sampled[k], dtype=np.float64) if k in sampled
                else np.full(n, float(cfg[k])) for k in KEYS}
    except (TypeError, ValueError, KeyError):
        return undecided_all
    depth, w0, wa, wm = cols["depth"], cols["w0"], cols["wa"], cols["wm"]
    ok = (depth >= 1) & (depth == np.floor(depth)) & (w0 > 0) & (wm > 1) & (wa >= 0)
    if not ok.all() or depth.max() > 10_000:
        return undecided_all
    d = int(depth.max())
    j = np.arange(d, dtype=np.float64)
    with np.errstate(all="ignore"):
        ratio = np.log((j[None, :] * wa[:, None] + w0[:, None]) / w0[:, None]) / np.log(wm)[:, None]
        s = np.rint(ratio)
        near_tie = np.abs(np.abs(ratio - np.floor(ratio)) - 0.5) < ratio_tie
        scaled = w0[:, None] * np.power(wm[:, None], s) / QUANT
        widths = np.rint(scaled) * QUANT
        near_tie |= np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) < width_tie * np.maximum(1, scaled)
    inside = j[None, :] < depth[:, None]
    near_tie &= inside
    s = np.where(inside, s, -1)
    widths = np.where(inside, widths, -1.0)
    out: list[tuple[str | None, int] | None] = []
    undecided = near_tie.any(axis=1).tolist()
    top = s.max(axis=1).tolist()
    ordered = np.sort(widths, axis=1)
    first = np.ones_like(ordered, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    distinct = (first & (ordered != -1.0)).sum(axis=1)  # -1 pads the rows of shallower draws
    for i, count in enumerate(distinct.tolist()):
        if undecided[i]:
            out.append(None)
        else:
            out.append((None if int(top[i]) + 1 == count else "stages", int(count)))
    return Screened(out, widths, depth.astype(np.int64).tolist())
