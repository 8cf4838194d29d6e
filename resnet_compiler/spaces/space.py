"""A design space file: a spec (usually `extends:` a preset or a `regnet:` generator) plus a
`space:` section that says which values to draw, from what, and which designs to keep.

```yaml
extends: regnetx_004
space:
  seed: 0
  sample:
    regnet.depth: {uniform: [12, 28], q: 1}
    regnet.w0:    {log_uniform: [8, 256], q: 8}
  constraints:
    flops: [360e6, 400e6]    # also params, macs, acts; either end may be null
    stages: [4, 4]
    widths: non_decreasing   # or increasing
```

Every mistake is a SpecError at the line of the entry that makes it. Numbers that YAML reads as
text (`360e6`) are read as numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..language.compose import resolve_document
from ..language.load import Document, load_file
from ..language.merge import item_index, item_names
from ..messages import did_you_mean
from .distributions import KINDS, QUANTUM, Distribution, DistributionError

SPACE = "space"
SPACE_KEYS = ("seed", "sample", "constraints", "max_draws")
TOTALS = ("params", "macs", "flops", "acts")
WIDTH_RULES = ("non_decreasing", "increasing")
CONSTRAINT_KEYS = (*TOTALS, "stages", "widths")
DEFAULT_MAX_DRAWS = 1_000_000  # pycls's own bound on draws
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def as_number(value: Any) -> int | float | None:
    """An int or float, also from text such as '360e6' (YAML 1.1 reads it as a string); None
    for anything else. Text without a decimal point that names a whole number gives an int."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        f = float(value)
        if not math.isfinite(f):
            return None
        return int(f) if f.is_integer() and "." not in value else f
    return None


@dataclass(frozen=True)
class Range:
    """low <= value <= high; None leaves that end open."""

    low: float | None
    high: float | None

    def holds(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def holds_near(self, value: float, margin: float) -> bool:
        """Whether `value` is inside the range widened by a relative `margin` at each end."""
        return ((self.low is None or value >= self.low * (1 - margin))
                and (self.high is None or value <= self.high * (1 + margin)))

    def distance(self, value: float) -> float:
        """How far `value` is outside the range (0 inside), relative to the nearer end."""
        if self.low is not None and value < self.low:
            return (self.low - value) / max(abs(self.low), 1)
        if self.high is not None and value > self.high:
            return (value - self.high) / max(abs(self.high), 1)
        return 0.0

    def __str__(self) -> str:
        def end(v: float | None) -> str:
            return "-" if v is None else f"{v:,.6g}"
        return f"[{end(self.low)}, {end(self.high)}]"


@dataclass
class Constraints:
    """What a design must meet: ranges on totals, on the number of stages, a rule on widths."""

    totals: dict[str, Range] = field(default_factory=dict)
    stages: Range | None = None
    widths: str | None = None

    def structure_problem(self, widths: list[int]) -> str | None:
        """The constraint the stage widths break ('stages', 'widths'), or None."""
        if self.stages is not None and not self.stages.holds(len(widths)):
            return "stages"
        steps = [b - a for a, b in zip(widths, widths[1:], strict=False)]
        if self.widths == "non_decreasing" and any(d < 0 for d in steps):
            return "widths"
        if self.widths == "increasing" and any(d <= 0 for d in steps):
            return "widths"
        return None


@dataclass
class Space:
    """A loaded, checked design space."""

    doc: Document        # the file with what it extends merged in, `space:` included
    base: Document       # the same without `space:`: the spec, before generators run
    folder: Path
    sample: dict[str, Distribution]
    constraints: Constraints
    seed: int
    max_draws: int = DEFAULT_MAX_DRAWS

    @property
    def source(self) -> str:
        return self.doc.source

    @property
    def name(self) -> str:
        name = self.base.data.get("name") if isinstance(self.base.data, dict) else None
        return name if isinstance(name, str) else Path(self.source).stem

    def error(self, path: tuple[str | int, ...], message: str) -> SpecError:
        return self.doc.error((SPACE, *path), message)


def load_space(path: str | Path) -> Space:
    """Read and check a space file; a SpecError (file:line: what is wrong) for any mistake."""
    loaded = load_file(path)
    if not isinstance(loaded.data, dict):
        raise SpecError.single("", "a design space is a spec (a mapping) plus space: {seed, "
                               "sample, constraints}", loaded.source)
    folder = Path(loaded.source).parent
    # merged with what it extends, `space:` included: a space can extend another and change
    # some of its distributions or constraints
    doc = resolve_document(loaded, folder, generate=False)
    data = doc.data
    if SPACE not in data:
        raise SpecError.single("", "no space: section; a design space is a spec plus space: "
                               "{seed, sample, constraints}", loaded.source)
    section = data[SPACE]
    if not isinstance(section, dict):
        raise doc.error((SPACE,), "must be a mapping: {seed, sample, constraints}")
    for key in section:
        if key not in SPACE_KEYS:
            raise doc.error((SPACE, key), f"unknown key {key!r}{did_you_mean(key, SPACE_KEYS)} "
                                          f"(keys: {', '.join(SPACE_KEYS)})")
    base = Document({k: v for k, v in data.items() if k != SPACE}, doc.source, doc.lines,
                    doc.sources, doc.libraries)
    seed = _whole(doc, (SPACE, "seed"), section.get("seed", 0), 0)
    max_draws = _whole(doc, (SPACE, "max_draws"), section.get("max_draws", DEFAULT_MAX_DRAWS), 1)
    sample = _sample(doc, base, section.get("sample"))
    constraints = _constraints(doc, section.get("constraints") or {})
    return Space(doc, base, folder, sample, constraints, seed, max_draws)


def _whole(doc: Document, at: tuple[str, ...], value: Any, least: int) -> int:
    number = as_number(value)
    if not isinstance(number, int) or number < least:
        raise doc.error(at, f"must be a whole number >= {least} (got {value!r})")
    return number


def _sample(doc: Document, base: Document, entries: Any) -> dict[str, Distribution]:
    at = (SPACE, "sample")
    if not isinstance(entries, dict) or not entries:
        raise doc.error(at, "must map spec paths to distributions, e.g. regnet.w0: "
                            "{log_uniform: [8, 256], q: 8}")
    out = {}
    for key, entry in entries.items():
        where = (*at, key)
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise doc.error(where, f"{key!r} is not a dotted spec path such as regnet.w0 or "
                                   "stages.1.depth")
        problem = path_problem(base.data, key)
        if problem:
            raise doc.error(where, problem)
        out[key] = _distribution(doc, where, entry)
    return out


def _distribution(doc: Document, where: tuple[str, ...], entry: Any) -> Distribution:
    example = "e.g. {uniform: [12, 28], q: 1} or {choice: [0.25, 0.5, 1.0]}"
    if not isinstance(entry, dict):
        raise doc.error(where, f"must be a distribution, {example} (got {entry!r})")
    kinds = [k for k in entry if k != QUANTUM]
    for k in kinds:
        if k not in KINDS:
            raise doc.error((*where, k), f"unknown distribution {k!r}{did_you_mean(k, KINDS)} "
                                         f"(distributions: {', '.join(KINDS)})")
    if len(kinds) != 1:
        raise doc.error(where, f"give exactly one distribution ({', '.join(KINDS)}), "
                               f"{example}" + (f"; found {', '.join(kinds)}" if kinds else ""))
    kind = kinds[0]
    args = entry[kind]
    q = None
    if QUANTUM in entry:
        q = as_number(entry[QUANTUM])
        if q is None:
            raise doc.error((*where, QUANTUM), f"the quantum q must be a number (got "
                                               f"{entry[QUANTUM]!r})")
    try:
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise DistributionError(f"choice takes a list of values, {example}")
            values = tuple(_choice_value(v) for v in args)
            return Distribution(kind, q=q, choices=values)
        ends = [as_number(v) for v in args] if isinstance(args, list) else []
        if len(ends) != 2 or any(v is None for v in ends):
            raise DistributionError(f"{kind} takes a range [low, high] of two numbers (got "
                                    f"{args!r})")
        return Distribution(kind, float(ends[0]), float(ends[1]), q)  # type: ignore[arg-type]
    except DistributionError as e:
        raise doc.error((*where, kind), str(e).removeprefix(f"{kind}: ")) from None


def _choice_value(value: Any) -> Any:
    number = as_number(value) if isinstance(value, str) else None
    return number if number is not None else value


def _constraints(doc: Document, entries: Any) -> Constraints:
    at = (SPACE, "constraints")
    if not isinstance(entries, dict):
        raise doc.error(at, "must be a mapping, e.g. {flops: [360e6, 400e6], stages: [4, 4]}")
    out = Constraints()
    for key, value in entries.items():
        where = (*at, key)
        if key not in CONSTRAINT_KEYS:
            raise doc.error(where, f"unknown constraint {key!r}{did_you_mean(key, CONSTRAINT_KEYS)}"
                                   f" (constraints: {', '.join(CONSTRAINT_KEYS)})")
        if key == "widths":
            if value not in WIDTH_RULES:
                raise doc.error(where, f"must be one of {', '.join(WIDTH_RULES)} (got {value!r})")
            out.widths = value
            continue
        rng = _range(doc, where, value)
        if key == "stages":
            out.stages = rng
        else:
            out.totals[key] = rng
    return out


def _range(doc: Document, where: tuple[str, ...], value: Any) -> Range:
    ends = value if isinstance(value, list) and len(value) == 2 else None
    if ends is None:
        raise doc.error(where, f"must be a range [low, high] (null leaves an end open; got "
                               f"{value!r})")
    parsed = []
    for end in ends:
        number = None if end is None else as_number(end)
        if end is not None and number is None:
            raise doc.error(where, f"{end!r} is not a number")
        parsed.append(number)
    low, high = parsed
    if low is not None and high is not None and low > high:
        raise doc.error(where, f"the low end {low:,} is above the high end {high:,}")
    return Range(low, high)


# -- paths into the spec ---------------------------------------------------------------------

def path_problem(data: Any, dotted: str) -> str | None:
    """Why `dotted` names no value of the spec (None when it does). A `regnet:` section's keys
    may be left to their defaults and still be sampled."""
    from ..language.regnet import REQUIRED, SECTION_DEFAULTS
    parts = dotted.split(".")
    node, done = data, []
    for i, key in enumerate(parts):
        shown = ".".join(done) or "the spec"
        if isinstance(node, dict):
            if key in node:
                node = node[key]
            elif done == ["regnet"] and key in (*REQUIRED, *SECTION_DEFAULTS) and i == len(parts) - 1:
                return None
            else:
                keys = [str(k) for k in node]
                if done == ["regnet"]:
                    keys += [k for k in (*REQUIRED, *SECTION_DEFAULTS) if k not in keys]
                prefix = ".".join(done) + "." if done else ""
                hint = did_you_mean(key, keys)
                if hint:
                    hint = hint.replace("'", "'" + prefix, 1) if prefix else hint
                return f"{dotted} is not in the spec ({shown} has no key {key!r}){hint}"
        elif isinstance(node, list):
            index = item_index(node, key, tuple(done))
            if index is None:
                names = [n for n in item_names(node, tuple(done)) if n]
                known = f" or a name ({', '.join(names)})" if names else ""
                return (f"{dotted} is not in the spec ({shown} has {len(node)} items: an index 0 "
                        f"to {len(node) - 1}{known})")
            node = node[index]
        else:
            return f"{dotted} is not in the spec ({shown} is {node!r}, not a mapping or a list)"
        done.append(key)
    return None
