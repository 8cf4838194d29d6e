"""Comparing swept design spaces by their error distributions (Radosavovic et al., "On Network
Design Spaces for Visual Recognition", 2019).

- The error EDF of a sweep: F(e) = the fraction of its designs with error <= e.
- The normalised EDF: the same with per-design weights that make each complexity (flops) bin
  weigh the same, so a space is not judged better for holding more large models. Bins are
  log-spaced over the flops of all the sweeps compared; a design's weight is
  1 / (designs in its bin * occupied bins).
- The Kolmogorov-Smirnov statistic between two EDFs: D = sup_e |F1(e) - F2(e)|, with the
  asymptotic p-value of the two-sample test for the plain EDFs.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .files import RESULTS_CSV, RUNS, read_csv, read_designs, sampled_columns
from .space import as_number

Curve = list[tuple[float, float]]


@dataclass
class DesignResult:
    """One design of a sweep: its designs.csv row and its training outcome."""

    design: str
    row: dict[str, str]
    status: str
    error: float | None
    flops: float | None
    run: Path

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.error is not None


@dataclass
class Sweep:
    name: str
    folder: Path
    designs: list[DesignResult]
    sampled: list[str] = field(default_factory=list)

    @property
    def finished(self) -> list[DesignResult]:
        return [d for d in self.designs if d.ok]

    @property
    def errors(self) -> list[float]:
        return [d.error for d in self.finished]  # type: ignore[misc]


def load_sweep(folder: Path, name: str | None = None) -> Sweep:
    """A swept folder's designs joined with its results.csv (UsageError when it has none)."""
    rows = read_designs(folder)
    results = folder / RESULTS_CSV
    if not results.is_file():
        raise UsageError(f"{folder}: no {RESULTS_CSV}; run `resnet-compile sweep {folder}` first")
    outcome = {r.get("design", ""): r for r in read_csv(results)}
    designs = []
    for row in rows:
        r = outcome.get(row["design"], {})
        status = (r.get("status") or "not run").split(":")[0].strip()
        error = as_number(r.get("error", "")) if status == "ok" else None
        designs.append(DesignResult(row["design"], row, status, None if error is None else float(error),
                                    _float(row.get("flops")), folder / RUNS / Path(row["design"]).stem))
    return Sweep(name or folder.name, folder, designs, sampled_columns(rows))


def _float(text: str | None) -> float | None:
    v = as_number(text) if text is not None else None
    return None if v is None else float(v)


def sweep_names(folders: Sequence[Path]) -> list[str]:
    """A short distinct name per folder: its own name, with parents added where two clash."""
    parts = [f.resolve().parts for f in folders]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(f) for f in folders]


# -- EDFs ------------------------------------------------------------------------------------

def edf(errors: Sequence[float], weights: Sequence[float] | None = None) -> Curve:
    """(error, F(error)) at each distinct error, ascending; F reaches 1 at the largest. Without
    weights F is a count over n (exact fractions, not a running float sum)."""
    if not errors:
        return []
    pairs = sorted(zip(errors, weights if weights is not None else [1.0] * len(errors),
                       strict=True))
    total = sum(w for _, w in pairs)
    out: Curve = []
    acc = 0.0
    for i, (e, w) in enumerate(pairs):
        acc += w
        value = (i + 1) / len(pairs) if weights is None else acc / total
        if out and out[-1][0] == e:
            out[-1] = (e, value)
        else:
            out.append((e, value))
    out[-1] = (out[-1][0], 1.0)
    return out


def value_at(curve: Curve, x: float) -> float:
    """F(x) of a step EDF (right-continuous)."""
    i = bisect_right([e for e, _ in curve], x)
    return curve[i - 1][1] if i else 0.0


def ks_statistic(a: Curve, b: Curve) -> float:
    """sup |Fa - Fb| over every jump of either EDF."""
    xs = sorted({e for e, _ in a} | {e for e, _ in b})
    return max((abs(value_at(a, x) - value_at(b, x)) for x in xs), default=0.0)


def ks_pvalue(d: float, n: int, m: int) -> float:
    """The asymptotic two-sample p-value of D (Kolmogorov's distribution, Stephens' correction)."""
    if n == 0 or m == 0:
        return float("nan")
    ne = math.sqrt(n * m / (n + m))
    lam = (ne + 0.12 + 0.11 / ne) * d
    if lam < 0.2:
        return 1.0
    s = sum(2 * (-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam) for j in range(1, 101))
    return min(1.0, max(0.0, s))


def flops_edges(flops: Sequence[float], bins: int) -> list[float]:
    """`bins` log-spaced flops bins over the values given (one bin when they are all equal)."""
    values = [f for f in flops if f and f > 0]
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [lo, hi]
    step = (math.log(hi) - math.log(lo)) / bins
    return [math.exp(math.log(lo) + step * k) for k in range(bins)] + [hi]


def bin_weights(flops: Sequence[float | None], edges: Sequence[float]) -> list[float]:
    """Per-design weights making each occupied flops bin weigh the same."""
    if len(edges) < 2:
        return [1.0] * len(flops)
    inner = list(edges[1:-1])
    which = [bisect_right(inner, f) if f is not None else -1 for f in flops]
    counts: dict[int, int] = {}
    for b in which:
        counts[b] = counts.get(b, 0) + 1
    return [1.0 / (counts[b] * len(counts)) for b in which]


def normalised_edf(sweep: Sweep, edges: Sequence[float]) -> Curve:
    done = sweep.finished
    return edf([d.error for d in done], bin_weights([d.flops for d in done], edges))  # type: ignore[misc]


def default_bins(sweeps: Sequence[Sweep]) -> int:
    """Bins for the normalised EDF: about sqrt of the smallest sweep's size, 1 to 10."""
    smallest = min((len(s.finished) for s in sweeps), default=0)
    return max(1, min(10, round(math.sqrt(smallest)))) if smallest else 1
