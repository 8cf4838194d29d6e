"""Drawing designs from a space: rejection sampling, exact by construction.

Each draw takes every sampled value from its distribution (one seeded numpy Generator, values
drawn in fixed-size batches, so a seed always gives the same sequence). A draw is kept when the
network it resolves to meets every constraint and is not one already kept (two draws that give
the same network, the same spec sha256, are one design). Keeping exactly the draws that meet the
constraints is what makes the kept designs distributed as the space restricted to them; the work
goes into making each rejection cheap, never into changing which draws are kept:

1. A `regnet:` space's structure comes from the width generator alone (microseconds): pycls's
   rule (every exponent 0..max s_j gives a stage of its own), `stages` and `widths`.
2. For a plain `regnet:` spec, complexity is estimated by arithmetic on the generated stages
   (regnet_cost); draws whose estimate lies outside a range widened by 0.2% at each end are
   discarded without compiling.
3. Every other draw is compiled and judged by the compiler's counts (`net.count("pycls")`,
   `net.total_macs`). Each estimate is compared with the compiled counts; should one ever
   disagree, the estimate is switched off and sampling restarts from the seed without it.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..compiler import CompiledNetwork
from ..errors import SpecError
from ..ir.expand import build_graph
from ..language.compose import resolve_document
from ..language.references import validate_spec
from ..language.regnet import SECTION_DEFAULTS, block_widths
from ..messages import first_line
from . import regnet_cost
from .regnet_screen import Screened, screen
from .space import SPACE, Space

BATCH = 1024  # draws per batch: part of what a seed means, so fixed
MARGIN = 0.002  # how far outside a range an estimate may be and still be compiled
REGNET = "regnet"
GENERATOR_INPUTS = ("depth", "w0", "wa", "wm", "group_width", "bottle_ratio", "rounding")  # in the stages


@dataclass
class Design:
    """One kept design: its sampled values and the network they resolve to."""

    values: dict[str, Any]
    net: CompiledNetwork
    totals: dict[str, int]
    widths: list[int]
    depths: list[int]

    @property
    def sha256(self) -> str:
        return self.net.ir.graph["spec_sha256"]


@dataclass
class Tally:
    """What the draws came to: kept, rejected by which constraint, duplicates, and for each
    total constraint the nearest value seen (for the message when nothing fits)."""

    draws: int = 0
    compiled: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    nearest: dict[str, tuple[float, float]] = field(default_factory=dict)  # name: (distance, value)
    invalid: str | None = None  # the first reason a draw gave no valid spec

    def near(self, name: str, distance: float, value: float) -> None:
        if name not in self.nearest or distance < self.nearest[name][0]:
            self.nearest[name] = (distance, value)


class EstimateMismatch(Exception):
    """The arithmetic estimate and the compiler disagreed on a design."""


class NoDesigns(Exception):
    """Sampling ended (bound on draws, or every combination tried) with too few designs."""

    def __init__(self, found: int, tally: Tally, exhausted: int | None):
        super().__init__("too few designs")
        self.found, self.tally, self.exhausted = found, tally, exhausted


def compile_values(space: Space, values: dict[str, Any]) -> CompiledNetwork:
    """The network of the space's spec with `values` set at their paths (SpecError if invalid)."""
    doc = resolve_document(space.base, space.folder, overrides=values)
    model = validate_spec(doc)
    graph, layout = build_graph(model, doc)
    return CompiledNetwork(model, graph, layout, doc)


def stage_shape(net: CompiledNetwork) -> tuple[list[int], list[int]]:
    """(widths, depths): each stage's output channels and number of blocks."""
    nodes = net.ir.nodes
    ids = list(nodes)
    widths, depths = [], []
    for stage in net.layout.stages:
        last = stage.blocks[-1].id + "."
        inside = [n for n in ids if n.startswith(last)]
        widths.append(nodes[inside[-1]]["shape"][0] if inside else 0)
        depths.append(len(stage.blocks))
    return widths, depths


def exact_totals(net: CompiledNetwork) -> dict[str, int]:
    counts = net.count("pycls")
    return {"params": net.total_params, "macs": net.total_macs, "flops": counts["flops"],
            "acts": counts["acts"]}


class Sampler:
    """Draws designs from `space` with `seed` until `n` are kept or the bound on draws is hit."""

    def __init__(self, space: Space, seed: int, use_estimate: bool = True):
        self.space, self.seed = space, seed
        self.paths = list(space.sample)
        base = space.base.data
        self.section = base.get(REGNET) if isinstance(base.get(REGNET), dict) else None
        self.regnet_paths = [p for p in self.paths if p.startswith(REGNET + ".")
                             and p.count(".") == 1]
        self.estimate = use_estimate and self.section is not None and regnet_cost.applies(base) \
            and len(self.regnet_paths) == len(self.paths)
        sizes = [d.support_size() for d in space.sample.values()]
        self.combinations = math.prod(sizes) if all(s is not None for s in sizes) else None  # type: ignore[arg-type]

    def run(self, n: int, progress: bool = False) -> tuple[list[Design], Tally]:
        space, tally = self.space, Tally()
        rng = np.random.default_rng(self.seed)
        kept: list[Design] = []
        seen_values: set[tuple[Any, ...]] = set()
        seen_networks: set[Any] = set()
        stages = space.constraints.stages
        # every draw is remembered only where the combinations can run out within the bound;
        # otherwise those that get past the screen (a repeat of a refused draw is refused again)
        track_all = self.combinations is not None and self.combinations <= space.max_draws
        bar = _progress(n, progress)
        try:
            while len(kept) < n:
                if tally.draws >= space.max_draws:
                    raise NoDesigns(len(kept), tally, None)
                if self.combinations is not None and len(seen_values) >= self.combinations:
                    raise NoDesigns(len(kept), tally, self.combinations)
                batch = [space.sample[p].draw(rng, BATCH) for p in self.paths]
                screened = self.screen(batch)
                for i, values in enumerate(zip(*batch, strict=True)):
                    if len(kept) >= n or tally.draws >= space.max_draws:
                        break
                    tally.draws += 1
                    rule = screened.verdicts[i]
                    if rule is not None and (rule[0] or (stages and not stages.holds(rule[1]))):
                        tally.rejected[rule[0] or "stages"] += 1  # the screen's verdict: no dict
                        if track_all:
                            seen_values.add(values)
                        continue
                    if values in seen_values:
                        tally.rejected["repeat"] += 1
                        continue
                    seen_values.add(values)
                    design = self.consider(dict(zip(self.paths, values, strict=True)), tally,
                                           seen_networks, rule, screened.block_widths(i))
                    if design is not None:
                        kept.append(design)
                        if bar is not None:
                            bar.update(1)
                if bar is not None:
                    bar.set_postfix_str(f"{tally.draws:,} draws", refresh=False)
        finally:
            if bar is not None:
                bar.close()
        return kept, tally

    def screen(self, batch: list[list[Any]]) -> Screened:
        """The RegNet stage rule's verdicts for a batch, where numpy can give them for certain."""
        if self.section is None:
            return Screened([None] * BATCH)
        sampled = {p[len(REGNET) + 1:]: column for p, column in zip(self.paths, batch, strict=True)
                   if p in self.regnet_paths}
        return screen(self.section, sampled, BATCH)

    # -- one draw ----------------------------------------------------------------------------
    def consider(self, values: dict[str, Any], tally: Tally, seen: set[Any],
                 rule: tuple[str | None, int] | None = None,
                 widths: list[int] | None = None) -> Design | None:
        """Keep the draw `values` (a Design), or count why not. `rule`, `widths`: the batch
        screen's verdict on it and its block widths, when the screen decided it."""
        c = self.space.constraints
        estimate = key = None
        if self.section is not None:
            section = {**self.section, **{p[len(REGNET) + 1:]: values[p] for p in self.regnet_paths}}
            if rule is None:
                rule = self.regnet_rule(section)
                widths = None
            reason, count = rule
            if reason is None and c.stages is not None and not c.stages.holds(count):
                reason = "stages"
            if reason:
                tally.rejected[reason] += 1
                return None
            if self.estimate:
                stages = regnet_cost.stages_of(section, widths)
                reason = c.structure_problem([s.width for s in stages])
                if reason:
                    tally.rejected[reason] += 1
                    return None
                # the network: the generated stages and every section value they do not hold
                key = (tuple(stages), tuple((k, repr(v)) for k, v in sorted(section.items())
                                            if k not in GENERATOR_INPUTS))
                if key in seen:
                    tally.rejected["duplicate"] += 1
                    return None
                estimate = regnet_cost.estimate(self.space.base.data, section, stages)
                for name, rng in c.totals.items():
                    value = estimate[name]
                    if not rng.holds_near(value, MARGIN):
                        tally.rejected[name] += 1
                        tally.near(name, rng.distance(value), value)
                        return None
        tally.compiled += 1
        try:
            net = compile_values(self.space, values)
        except SpecError as e:
            tally.rejected["invalid"] += 1
            tally.invalid = tally.invalid or first_line(e)
            return None
        totals = exact_totals(net)
        if estimate is not None and estimate != totals:
            raise EstimateMismatch(f"{values}: estimated {estimate}, compiled {totals}")
        widths, depths = stage_shape(net)
        reason = c.structure_problem(widths)
        if reason:
            tally.rejected[reason] += 1
            return None
        for name, rng in c.totals.items():
            if not rng.holds(totals[name]):
                tally.rejected[name] += 1
                tally.near(name, rng.distance(totals[name]), totals[name])
                return None
        sha = net.ir.graph["spec_sha256"]
        if sha in seen:
            tally.rejected["duplicate"] += 1
            return None
        seen.add(sha)
        if key is not None:
            seen.add(key)
        return Design(values, net, totals, widths, depths)

    @staticmethod
    def regnet_rule(section: dict[str, Any]) -> tuple[str | None, int]:
        """(reason, stages): 'stages' when pycls's rule refuses the section (an exponent without
        a stage of its own), 'invalid' when the generator cannot run on it, else None; and how
        many stages it generates (one per distinct block width)."""
        cfg = {**SECTION_DEFAULTS, **section}
        try:
            widths, exps = block_widths(int(cfg["depth"]), float(cfg["w0"]), float(cfg["wa"]),
                                        float(cfg["wm"]), cfg["rounding"])
        except (ValueError, ZeroDivisionError, OverflowError, TypeError, KeyError):
            return "invalid", 0
        count = len(set(widths))
        if not exps or max(exps) + 1 != count:
            return "stages", count
        return None, count


def sample(space: Space, n: int, seed: int | None = None, progress: bool = False
           ) -> tuple[list[Design], Tally]:
    """`n` distinct designs from `space` (seed: the space's own unless given)."""
    seed = space.seed if seed is None else seed
    try:
        return Sampler(space, seed).run(n, progress)
    except EstimateMismatch as e:
        print(f"note: the complexity estimate disagreed with the compiler ({e}); sampling again "
              "from the seed, compiling every draw", file=sys.stderr)
        return Sampler(space, seed, use_estimate=False).run(n, progress)


def no_designs_error(space: Space, n: int, e: NoDesigns) -> SpecError:
    """The one-line error for a space whose constraints too few draws meet."""
    t = e.tally
    why = ", ".join(f"{name} {count:,}" for name, count in t.rejected.most_common())
    near = "".join(f"; nearest {name} seen: {value:,.0f} (want {space.constraints.totals[name]})"
                   for name, (_, value) in sorted(t.nearest.items()))
    if e.exhausted is not None:
        head = (f"the space has {e.exhausted:,} combinations of sampled values; only {e.found} of "
                f"them give designs that meet the constraints (asked for {n})")
    else:
        head = (f"{e.found} of {n} designs meet the constraints after {t.draws:,} draws (the bound"
                f" is space.max_draws = {space.max_draws:,}); relax the constraints or widen the"
                " ranges")
    invalid = f"; a draw's spec was invalid: {t.invalid}" if t.invalid else ""
    where = ("constraints",) if space.constraints.totals or space.constraints.stages else ("sample",)
    return space.error(where, f"{head} (draws rejected by: {why or 'nothing'}{near}){invalid}")


def _progress(n: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=n, desc="sampling", unit=" designs", file=sys.stderr, mininterval=0.2,
                leave=True)


__all__ = ["SPACE", "Design", "NoDesigns", "Sampler", "Tally", "compile_values", "sample"]
