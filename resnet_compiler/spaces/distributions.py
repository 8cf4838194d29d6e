"""The distributions a design space draws values from, as pycls defines them
(`pycls/sweep/random.py`, `samplers.py`), drawn in batches from a seeded numpy Generator.

Each is a range [low, high] and a quantum q: a value is drawn on a continuous scale and quantised
to a multiple of q (floor, ceil or round, as pycls does for that kind); the value then has q's
type (an int q gives ints). Multiples are formed in decimal, so 0.1 * 243 is 24.3, not
24.300000000000001, as pycls's `quantize` forms them.

- uniform: U[low, high + q), floored to q: each multiple of q in [low, high] equally likely.
- log_uniform: log-uniform on (low - q*, high] with q* = min(q, low / 2), ceiled to q.
- power2_uniform: 2^j with j uniform on log2(low)..log2(high), floored to q.
- power2_or_log_uniform: a power of 2 from power2_uniform(low, high); one that is at least q is
  replaced by log_uniform(max(low, q), high, min(high, q)) (pycls's group-width sampler).
- normal: N((low + high) / 2, (high - low) / 6) truncated to [low, high], rounded to q.
- log_normal: exp of a normal whose mean and spread are those of log(low) and log(high) as above,
  truncated to [low, high], rounded to q.
- choice: one of the listed values, each equally likely.

Without q a value is not quantised (a float), except for the power-of-2 kinds and choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

KINDS = ("uniform", "log_uniform", "power2_uniform", "power2_or_log_uniform", "normal",
         "log_normal", "choice")
LOG_KINDS = ("log_uniform", "log_normal", "power2_uniform", "power2_or_log_uniform")
QUANTUM = "q"
_MAX_RESAMPLE_ROUNDS = 10_000


class DistributionError(ValueError):
    """A distribution entry that cannot be drawn from; the message says why, in plain words."""


@dataclass
class Distribution:
    """One sampled value: its kind, range (or the choices) and quantum."""

    kind: str
    low: float = 0.0
    high: float = 0.0
    q: int | float | None = None
    choices: tuple[Any, ...] = ()
    _grid: dict[int, int | float] = field(default_factory=dict, repr=False, compare=False)
    _rest: Distribution | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise DistributionError(problem)

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice of {list(self.choices)}"
        q = f", q {self.q:g}" if self.q is not None else ""
        return f"{self.kind} on [{self.low:g}, {self.high:g}]{q}"

    def _problem(self) -> str | None:
        if self.kind == "choice":
            if not self.choices:
                return "choice needs at least one value"
            if self.q is not None:
                return "choice takes no quantum q (it draws the listed values)"
            return None
        lo, hi, q = self.low, self.high, self.q
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return f"{self.kind}: the range must be finite numbers (got [{lo}, {hi}])"
        if lo > hi:
            return f"{self.kind}: the low end {lo:g} is above the high end {hi:g}"
        if q is not None and not (math.isfinite(q) and q > 0):
            return f"{self.kind}: the quantum q must be a number above 0 (got {q})"
        if self.kind in LOG_KINDS and lo <= 0:
            return f"{self.kind}: the range must be above 0 (got [{lo:g}, {hi:g}])"
        if self.kind in ("power2_uniform", "power2_or_log_uniform"):
            for end in (lo, hi):
                if 2 ** round(math.log2(end)) != end:
                    return f"{self.kind}: the range's ends must be powers of 2 (got {end:g})"
        if self.kind == "power2_or_log_uniform" and q is None:
            return "power2_or_log_uniform needs a quantum q (powers of 2 below it are kept)"
        if q is not None and self.kind not in ("normal", "log_normal", "power2_uniform"):
            k0, k1 = math.ceil(lo / q - 1e-9), math.floor(hi / q + 1e-9)
            if k1 < k0:
                return f"{self.kind}: no multiple of q {q:g} lies in [{lo:g}, {hi:g}]"
        return None

    # -- values ------------------------------------------------------------------------------
    def _value(self, k: int, q: int | float) -> int | float:
        """k * q formed in decimal, with q's type (cached: the grids are small)."""
        v = self._grid.get(k)
        if v is None:
            exact = Decimal(k) * Decimal(str(q))
            v = int(exact) if isinstance(q, int) else float(exact)
            self._grid[k] = v
        return v

    def _quantise(self, f: np.ndarray, rounding: Any, q: int | float | None) -> list[Any]:
        if q is None:
            return f.tolist()
        ks = rounding(f / q).astype(np.int64).tolist()
        return [self._value(k, q) for k in ks]

    def draw(self, rng: np.random.Generator, n: int) -> list[Any]:
        """`n` values, in order; the same generator state gives the same values."""
        kind = self.kind
        if kind == "choice":
            return [self.choices[i] for i in rng.integers(0, len(self.choices), n).tolist()]
        if kind == "power2_uniform":
            return self._power2(rng, n, self.q if self.q is not None else 1)
        if kind == "power2_or_log_uniform":
            assert self.q is not None
            values = self._power2(rng, n, self.low)
            big = [i for i, v in enumerate(values) if v >= self.q]
            if big:
                for i, v in zip(big, self._above_q().draw(rng, len(big)), strict=True):
                    values[i] = v
            return values
        return self._resampled(rng, n)

    def _above_q(self) -> Distribution:
        """power2_or_log_uniform's log-uniform part (made once: its grid is cached)."""
        if self._rest is None:
            assert self.q is not None
            self._rest = Distribution("log_uniform", max(self.low, self.q), self.high,
                                      _min_q(self.high, self.q))
        return self._rest

    def _power2(self, rng: np.random.Generator, n: int, q: int | float) -> list[Any]:
        j = rng.integers(round(math.log2(self.low)), round(math.log2(self.high)) + 1, n)
        return self._quantise(np.power(2.0, j), np.floor, _as_q(q))

    def _resampled(self, rng: np.random.Generator, n: int) -> list[Any]:
        """Continuous draws quantised; values that land outside [low, high] are drawn again."""
        out: list[Any] = [None] * n
        todo = list(range(n))
        for _ in range(_MAX_RESAMPLE_ROUNDS):
            values, inside = self._continuous(rng, len(todo))
            again = []
            for i, v, ok in zip(todo, values, inside, strict=True):
                if ok:
                    out[i] = v
                else:
                    again.append(i)
            todo = again
            if not todo:
                return out
        raise DistributionError(f"{self.describe()}: almost no draw lands in the range")

    def _continuous(self, rng: np.random.Generator, n: int) -> tuple[list[Any], list[bool]]:
        """`n` values and whether each lies in [low, high] (a truncated normal always does)."""
        lo, hi, q = self.low, self.high, self.q
        if self.kind in ("normal", "log_normal"):
            return self._quantise(self._truncated_normal(rng, n), np.rint, q), [True] * n
        if self.kind == "uniform":
            f = rng.uniform(lo, hi, n) if q is None else rng.uniform(lo, hi + q, n)
            rounding = np.floor
        elif self.kind == "log_uniform":
            start = lo - min(q, lo / 2) if q is not None else lo
            f = np.exp(rng.uniform(math.log(start), math.log(hi), n))
            rounding = np.ceil
        else:
            raise AssertionError(self.kind)
        if q is None:
            return f.tolist(), ((f >= lo) & (f <= hi)).tolist()
        ks = rounding(f / q).astype(np.int64)
        inside = (ks >= math.ceil(lo / q - 1e-9)) & (ks <= math.floor(hi / q + 1e-9))
        return [self._value(k, q) for k in ks.tolist()], inside.tolist()

    def _truncated_normal(self, rng: np.random.Generator, n: int) -> np.ndarray:
        lo, hi = self.low, self.high
        log = self.kind == "log_normal"
        a, b = (math.log(lo), math.log(hi)) if log else (lo, hi)
        mu, sd = (a + b) / 2, (b - a) / 6
        out = np.empty(n)
        filled = 0
        while filled < n:
            f = rng.normal(mu, sd, n - filled) if sd > 0 else np.full(n - filled, mu)
            if log:
                f = np.exp(f)
            f = f[(f >= lo) & (f <= hi)]
            out[filled:filled + len(f)] = f
            filled += len(f)
        return out

    def support_size(self) -> int | None:
        """How many distinct values it can give (None: a continuous distribution)."""
        if self.kind == "choice":
            return len(set(map(repr, self.choices)))
        if self.kind == "power2_uniform":
            return round(math.log2(self.high)) - round(math.log2(self.low)) + 1
        if self.q is None:
            return None
        q = self.q
        if self.kind == "power2_or_log_uniform":
            small = sum(1 for j in range(round(math.log2(self.low)), round(math.log2(self.high)) + 1)
                        if 2 ** j < q)
            qq = _min_q(self.high, q)
            return small + math.floor(self.high / qq + 1e-9) - math.ceil(max(self.low, q) / qq - 1e-9) + 1
        if self.kind in ("normal", "log_normal"):
            return round(self.high / q) - round(self.low / q) + 1
        return math.floor(self.high / q + 1e-9) - math.ceil(self.low / q - 1e-9) + 1


def _min_q(high: float, q: int | float) -> int | float:
    return q if q <= high else _as_q(high)


def _as_q(value: float) -> int | float:
    """A quantum as the type its value suggests: 8.0 -> 8, 0.5 -> 0.5."""
    return int(value) if float(value).is_integer() else float(value)
