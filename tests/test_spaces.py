"""Design spaces without Ray: pycls's distributions (checked against their exact CDFs by a
Kolmogorov-Smirnov test), space-file errors, constraints (a property test), the complexity
screen against the compiler, determinism, and `sample` running where torch cannot be imported."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import resnet_compiler as rc
from resnet_compiler.cli import main
from resnet_compiler.language.regnet import block_widths
from resnet_compiler.spaces import regnet_cost
from resnet_compiler.spaces import sample as sampling
from resnet_compiler.spaces.distributions import Distribution
from resnet_compiler.spaces.regnet_screen import screen
from resnet_compiler.spaces.space import load_space

REGNET_SPACE = """\
name: regnet_space
input: {{channels: 3, height: 224, width: 224}}
num_classes: 1000
regnet: {{depth: 22, w0: 24, wa: 24.48, wm: 2.54, group_width: 16}}
space:
  seed: 0
  sample:
    regnet.depth:       {{uniform: [12, 28], q: 1}}
    regnet.w0:          {{log_uniform: [8, 256], q: 8}}
    regnet.wa:          {{log_uniform: [8.0, 256.0], q: 0.1}}
    regnet.wm:          {{log_uniform: [2.0, 3.0], q: 0.001}}
    regnet.group_width: {{power2_or_log_uniform: [8, 128], q: 8}}
  constraints:
{constraints}
"""
WINDOW = "    flops: [360e6, 400e6]\n    stages: [4, 4]"


def write_space(tmp_path: Path, constraints: str = WINDOW, name: str = "space.yaml") -> Path:
    f = tmp_path / name
    f.write_text(REGNET_SPACE.format(constraints=constraints))
    return f


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- distributions ---------------------------------------------------------------------------

def grid(lo: float, hi: float, q: float) -> list[float]:
    k0 = math.ceil(Decimal(str(lo)) / Decimal(str(q)))
    k1 = math.floor(Decimal(str(hi)) / Decimal(str(q)))
    return [float(Decimal(k) * Decimal(str(q))) for k in range(k0, k1 + 1)]


def log_uniform_cdf(lo: float, hi: float, q: float) -> dict[float, float]:
    a = lo - min(q, lo / 2)  # the open low end pycls's sampler starts from
    return {v: min(1.0, math.log(v / a) / math.log(hi / a)) for v in grid(lo, hi, q)}


def exact_cdf(kind: str, lo: float, hi: float, q: float) -> dict[float, float]:
    """The distribution's CDF at its support points, from pycls's definitions."""
    if kind == "uniform":
        vs = grid(lo, hi, q)
        return {v: (i + 1) / len(vs) for i, v in enumerate(vs)}
    if kind == "log_uniform":
        return log_uniform_cdf(lo, hi, q)
    if kind == "power2_uniform":
        js = list(range(round(math.log2(lo)), round(math.log2(hi)) + 1))
        return {float(math.floor(2 ** j / q) * q): (i + 1) / len(js) for i, j in enumerate(js)}
    if kind == "power2_or_log_uniform":
        js = list(range(round(math.log2(lo)), round(math.log2(hi)) + 1))
        small = [2.0 ** j for j in js if 2 ** j < q]
        out, acc = {}, 0.0
        for v in small:
            acc += 1 / len(js)
            out[v] = acc
        rest = 1 - len(small) / len(js)
        for v, c in log_uniform_cdf(max(lo, q), hi, min(hi, q)).items():
            out[v] = acc + rest * c
        return out
    if kind in ("normal", "log_normal"):
        f = (lambda x: x) if kind == "normal" else math.log
        mu, sd = (f(lo) + f(hi)) / 2, (f(hi) - f(lo)) / 6
        phi = stats.norm(mu, sd).cdf
        z0, z1 = phi(f(lo)), phi(f(hi))
        out = {}
        for k in range(round(lo / q), round(hi / q) + 1):
            edge = min((k + 0.5) * q, hi)
            if edge >= lo:
                out[float(Decimal(k) * Decimal(str(q)))] = (phi(f(edge)) - z0) / (z1 - z0)
        return out
    raise AssertionError(kind)


CASES = [("uniform", 12, 28, 1), ("log_uniform", 8, 256, 8), ("log_uniform", 2.0, 3.0, 0.001),
         ("log_uniform", 8.0, 256.0, 0.1), ("power2_uniform", 16, 64, 8),
         ("power2_or_log_uniform", 8, 128, 8), ("power2_or_log_uniform", 8, 128, 32),
         ("normal", 0.0, 0.5, 0.05), ("log_normal", 2.0, 3.0, 0.001)]


@pytest.mark.parametrize(("kind", "lo", "hi", "q"), CASES)
def test_distribution_matches_pycls_definition(kind: str, lo: float, hi: float, q: float) -> None:
    """4,000 draws: every value on the distribution's grid, and a KS test against the exact CDF
    (of the quantised distribution) does not reject it."""
    n = 4000
    values = Distribution(kind, lo, hi, q).draw(np.random.default_rng(7), n)
    cdf = exact_cdf(kind, lo, hi, q)
    off = [v for v in values if v not in cdf]  # both form k * q in decimal: equal floats
    assert not off, f"{len(off)} values off the grid, e.g. {off[:3]}"
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    seen, d = 0, 0.0
    for v in sorted(cdf):
        seen += counts.get(v, 0)
        d = max(d, abs(seen / n - cdf[v]))
    p = stats.kstwobign.sf(math.sqrt(n) * d)  # conservative for a discrete null
    assert p > 0.001, f"{kind}({lo}, {hi}, q={q}): KS D = {d:.4f}, p = {p:.2g}"
    assert isinstance(values[0], type(q))  # pycls: a value has its quantum's type


def test_choice_and_seeded_batches() -> None:
    d = Distribution("choice", choices=(0.25, 0.5, 1.0))
    values = d.draw(np.random.default_rng(0), 3000)
    share = [values.count(v) / 3000 for v in (0.25, 0.5, 1.0)]
    assert max(abs(s - 1 / 3) for s in share) < 0.04
    again = d.draw(np.random.default_rng(0), 3000)
    assert values == again


# -- the space file and its errors -------------------------------------------------------------

BAD = [
    ("{log_unifrom: [8, 256], q: 8}", "unknown distribution 'log_unifrom'; did you mean 'log_uniform'"),
    ("{log_uniform: [256, 8], q: 8}", "the low end 256 is above the high end 8"),
    ("{log_uniform: [8], q: 8}", "takes a range [low, high] of two numbers"),
    ("{log_uniform: [-8, 8], q: 8}", "the range must be above 0"),
    ("{uniform: [8, 256], q: 0}", "the quantum q must be a number above 0"),
    ("{power2_uniform: [6, 64]}", "must be powers of 2"),
    ("{uniform: [1, 2], normal: [1, 2]}", "give exactly one distribution"),
    ("{choice: []}", "choice takes a list of values"),
    ("8", "must be a distribution"),
]


@pytest.mark.parametrize(("entry", "message"), BAD)
def test_bad_distribution_is_one_line_at_its_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   entry: str, message: str) -> None:
    text = REGNET_SPACE.format(constraints=WINDOW).replace("{log_uniform: [8, 256], q: 8}", entry)
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    out = tmp_path / "out"
    assert main(["sample", str(f), "-n", "3", "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{f}:9: space.sample.regnet.w0"), err
    assert message in err[0]
    assert not out.exists()


@pytest.mark.parametrize(("old", "new", "line", "message"), [
    ("regnet.w0:  ", "regnet.w_0: ", 9, "regnet.w_0 is not in the spec (regnet has no key 'w_0'); did "
                                        "you mean 'regnet.w0'?"),
    ("    flops: [360e6, 400e6]", "    flop: [360e6, 400e6]", 14, "unknown constraint 'flop'; did you "
                                                                  "mean 'flops'?"),
    ("    flops: [360e6, 400e6]", "    flops: [400e6, 360e6]", 14, "the low end 400,000,000 is above"),
    ("    stages: [4, 4]", "    widths: upward", 15, "must be one of non_decreasing, increasing"),
    ("  seed: 0", "  seed: -1", 6, "must be a whole number >= 0"),
    ("  seed: 0", "  sed: 0", 6, "unknown key 'sed'; did you mean 'seed'?"),
])
def test_bad_space_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str,
                           line: int, message: str) -> None:
    f = tmp_path / "bad.yaml"
    text = REGNET_SPACE.format(constraints=WINDOW)
    assert old in text
    f.write_text(text.replace(old, new, 1))
    assert main(["sample", str(f), "-n", "3", "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{f}:{line}: "), err
    assert message in err[0]


def test_paths_into_stage_lists_and_regnet_defaults(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("extends: resnet18\nspace:\n  sample:\n    stages.layer2.depth: {uniform: [1, 3], q: 1}\n"
                 "    stages.3.channels: {choice: [256, 512]}\n")
    space = load_space(f)
    assert list(space.sample) == ["stages.layer2.depth", "stages.3.channels"]
    f.write_text("extends: resnet18\nspace:\n  sample:\n    stages.layer5.depth: {uniform: [1, 3], q: 1}\n")
    with pytest.raises(rc.SpecError, match=r"s\.yaml:4: .*4 items: an index 0 to 3 or a name \(layer1"):
        load_space(f)
    f.write_text("extends: regnetx_004\nspace:\n  sample:\n    regnet.se_ratio: {choice: [0.0, 0.25]}\n")
    assert list(load_space(f).sample) == ["regnet.se_ratio"]  # a section default may be sampled


def test_unsatisfiable_constraints_stop_after_the_bound(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    f = write_space(tmp_path, "    flops: [1, 2]\n    stages: [4, 4]")
    out = tmp_path / "out"
    assert main(["sample", str(f), "-n", "5", "-o", str(out), "--max-draws", "20000",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"{f}:13: space.constraints: 0 of 5 designs meet the constraints after "
                          "20,000 draws"), err
    assert "flops" in err and "nearest flops seen" in err
    assert not out.exists()


def test_a_finite_space_runs_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("extends: resnet18\nhead: {dropout: 0.0}\nspace:\n  sample:\n"
                 "    head.dropout: {choice: [0.0, 0.1, 0.2]}\n")
    assert main(["sample", str(f), "-n", "5", "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "the space has 3 combinations of sampled values; only 3 of them give designs" in \
        capsys.readouterr().err


# -- sampling ----------------------------------------------------------------------------------

def test_sample_writes_designs_that_compile_to_their_rows(tmp_path: Path) -> None:
    f = write_space(tmp_path)
    out = tmp_path / "d"
    assert main(["sample", str(f), "-n", "12", "-o", str(out), "--no-progress"]) == 0
    rows = read_rows(out / "designs.csv")
    assert list(rows[0]) == ["design", "regnet.depth", "regnet.w0", "regnet.wa", "regnet.wm",
                             "regnet.group_width", "params", "macs", "flops", "acts", "widths",
                             "depths"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["designs.csv", *(r["design"] for r in rows)])
    for r in rows:
        net = rc.compile(str(out / r["design"]))
        c = net.count("pycls")
        assert (int(r["flops"]), int(r["params"]), int(r["macs"]), int(r["acts"])) == \
            (c["flops"], c["params"], net.total_macs, c["acts"])
        assert 360e6 <= c["flops"] <= 400e6
        assert [s.channels for s in net.spec.stages] == [int(w) for w in r["widths"].split()]
        assert net.name == Path(r["design"]).stem
    again = tmp_path / "again"
    main(["sample", str(f), "-n", "12", "-o", str(again), "--no-progress"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == \
        {p.name: p.read_bytes() for p in again.iterdir()}
    other = tmp_path / "other"
    main(["sample", str(f), "-n", "12", "-o", str(other), "--seed", "1", "--no-progress"])
    assert read_rows(other / "designs.csv") != rows


def test_sample_refuses_a_folder_with_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["sample", str(write_space(tmp_path)), "-n", "2", "-o", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_sample_needs_no_torch(tmp_path: Path) -> None:
    """The whole command in a process where `import torch` fails; torch never gets imported."""
    blocker = tmp_path / "blocked" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is not available here')\n")
    code = ("import sys; from resnet_compiler.cli import main; rc = main(sys.argv[1:]); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'ray')], 'imported'; "
            "sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": f"{blocker.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, "-c", code, "sample", str(write_space(tmp_path)), "-n", "3",
                        "-o", str(tmp_path / "d"), "--no-progress"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(read_rows(tmp_path / "d" / "designs.csv")) == 3


def test_numbers_written_as_text_are_numbers(tmp_path: Path) -> None:
    f = write_space(tmp_path, "    flops: ['3.6e8', 400e6]\n    params: [null, 1e7]")
    space = load_space(f)
    assert space.constraints.totals["flops"].low == 3.6e8
    assert space.constraints.totals["flops"].high == 400_000_000
    assert space.constraints.totals["params"].low is None


# -- the complexity screen and the estimate against the compiler --------------------------------

SECTIONS = st.fixed_dictionaries({
    "depth": st.integers(1, 24), "w0": st.integers(1, 32).map(lambda k: 8 * k),
    "wa": st.floats(0, 120).map(lambda x: round(x, 1)), "wm": st.floats(1.5, 3.2).map(lambda x: round(x, 3)),
    "group_width": st.sampled_from([1, 8, 16, 24, 48, 64]),
    "bottle_ratio": st.sampled_from([0.25, 0.5, 1.0, 2.0]), "se_ratio": st.sampled_from([0.0, 0.25]),
    "stem_width": st.sampled_from([16, 32]), "rounding": st.sampled_from(["pycls", "timm", "torchvision"]),
    "num_features": st.sampled_from([0, 256])})


@settings(max_examples=examples(40, 300))
@given(section=SECTIONS, size=st.sampled_from([(3, 224, 224), (1, 32, 48), (3, 9, 9)]))
def test_estimate_equals_the_compiler(section: dict, size: tuple[int, int, int]) -> None:
    spec = {"name": "x", "input": dict(zip(("channels", "height", "width"), size, strict=True)),
            "num_classes": 10, "regnet": section}
    try:
        net = rc.compile(spec)
    except rc.SpecError:
        return
    assert regnet_cost.applies(spec)
    c = net.count("pycls")
    exact = {"params": c["params"], "macs": net.total_macs, "flops": c["flops"], "acts": c["acts"]}
    assert regnet_cost.estimate(spec, section, regnet_cost.stages_of(section)) == exact


@settings(max_examples=examples(30, 200))
@given(rows=st.lists(SECTIONS, min_size=1, max_size=40),
       rounding=st.sampled_from(["pycls", "timm", "torchvision"]))
def test_screen_agrees_with_the_generator(rows: list[dict], rounding: str) -> None:
    keys = ("depth", "w0", "wa", "wm")
    screened = screen({"group_width": 8, "rounding": rounding},
                      {k: [r[k] for r in rows] for k in keys}, len(rows))
    for i, (r, verdict) in enumerate(zip(rows, screened.verdicts, strict=True)):
        if verdict is None:
            continue
        widths, exps = block_widths(r["depth"], r["w0"], r["wa"], r["wm"], rounding)
        count = len(set(widths))
        assert verdict == (None if max(exps) + 1 == count else "stages", count)
        assert screened.block_widths(i) == widths


def test_a_wrong_estimate_restarts_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the estimate ever disagree with the compiler, sampling starts over compiling every
    draw, and keeps exactly what that gives."""
    space = load_space(write_space(tmp_path))
    plain, _ = sampling.Sampler(space, 3, use_estimate=False).run(3)
    real = regnet_cost.estimate
    monkeypatch.setattr(regnet_cost, "estimate", lambda *a: {**real(*a), "flops": real(*a)["flops"] + 1})
    kept, _ = sampling.sample(space, 3, seed=3)
    assert [d.values for d in kept] == [d.values for d in plain]


# -- constraints hold, whatever they are (property) ------------------------------------------------

CONSTRAINTS = st.fixed_dictionaries({
    "flops": st.tuples(st.integers(50, 800), st.integers(10, 400)).map(
        lambda t: [t[0] * 10**6, (t[0] + t[1]) * 10**6]),
    "params": st.one_of(st.none(), st.integers(2, 12).map(lambda m: [None, m * 10**6])),
    "stages": st.sampled_from([[1, 8], [3, 4], [4, 4], [4, 6]]),
    "widths": st.sampled_from([None, "non_decreasing", "increasing"]),
})


@settings(max_examples=examples(8, 40))
@given(c=CONSTRAINTS, seed=st.integers(0, 1000))
def test_kept_designs_meet_every_constraint(tmp_path_factory: pytest.TempPathFactory, c: dict,
                                            seed: int) -> None:
    lines = [f"    {k}: {json.dumps(v)}" for k, v in c.items() if v is not None]  # JSON is YAML
    space = load_space(write_space(tmp_path_factory.mktemp("c"), "\n".join(lines)))
    space.max_draws = 4000
    try:
        kept, _ = sampling.sample(space, 3, seed=seed)
    except sampling.NoDesigns as e:
        kept = []
        assert e.tally.draws == 4000 or e.exhausted
    for d in kept:
        net = rc.compile(d.net.spec.model_dump(mode="json", exclude_defaults=True))
        flops, params = net.count("pycls")["flops"], net.total_params
        assert c["flops"][0] <= flops <= c["flops"][1]
        assert c["params"] is None or params <= c["params"][1]
        widths = [s.channels for s in net.spec.stages]
        assert c["stages"][0] <= len(widths) <= c["stages"][1]
        steps = [b - a for a, b in zip(widths, widths[1:], strict=False)]
        assert c["widths"] != "non_decreasing" or all(s >= 0 for s in steps)
        assert c["widths"] != "increasing" or all(s > 0 for s in steps)
        _, exps = block_widths(d.values["regnet.depth"], d.values["regnet.w0"],
                               d.values["regnet.wa"], d.values["regnet.wm"])
        assert max(exps) + 1 == len(widths)  # pycls's rule: every exponent has its stage
    assert len({d.sha256 for d in kept}) == len(kept)


def test_a_space_extends_another(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The child keeps the parent's distributions, changes what it names; an error in the
    parent's entry points at the parent's line."""
    write_space(tmp_path, name="parent.yaml")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\nname: regnety_space\nregnet: {se_ratio: 0.25}\nspace:\n"
                     "  sample:\n    regnet.depth: {uniform: [13, 16], q: 1}\n  constraints:\n"
                     "    flops: [200e6, 800e6]\n")
    space = load_space(child)
    assert list(space.sample) == ["regnet.depth", "regnet.w0", "regnet.wa", "regnet.wm",
                                  "regnet.group_width"]
    assert space.sample["regnet.depth"].high == 16
    assert space.constraints.totals["flops"].low == 200e6 and space.constraints.stages is not None
    assert space.base.data["regnet"]["se_ratio"] == 0.25 and "space" not in space.base.data
    out = tmp_path / "d"
    assert main(["sample", str(child), "-n", "4", "-o", str(out), "--no-progress"]) == 0
    for r in read_rows(out / "designs.csv"):
        assert 13 <= int(r["regnet.depth"]) <= 16 and 200e6 <= int(r["flops"]) <= 800e6
        assert rc.compile(str(out / r["design"])).spec.stages[0].model_extra["se_ratio"] == 0.25
    (tmp_path / "parent.yaml").write_text(REGNET_SPACE.format(constraints=WINDOW).replace(
        "{uniform: [12, 28], q: 1}", "{uniform: [28, 12], q: 1}"))
    child.write_text("extends: parent.yaml\nname: regnety_space\n")
    capsys.readouterr()
    assert main(["sample", str(child), "-n", "4", "-o", str(tmp_path / "e"), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'parent.yaml'}:8: space.sample.regnet.depth")


def test_ks_statistic_and_edfs_match_scipy() -> None:
    from resnet_compiler.spaces.analysis import (
        bin_weights,
        edf,
        flops_edges,
        ks_statistic,
    )
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 2, 40).round(1).tolist(), rng.normal(11, 2, 25).round(1).tolist()
    assert ks_statistic(edf(a), edf(b)) == pytest.approx(stats.ks_2samp(a, b).statistic)
    curve = edf(a)
    assert curve[-1][1] == 1.0 and all(f == sum(x <= e for x in a) / len(a) for e, f in curve)
    flops = [1e6, 1.1e6, 1.2e6, 8e6]  # three small designs and one large: two bins, 1/2 each
    w = bin_weights(flops, flops_edges(flops, 2))
    assert w == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])


@pytest.mark.parametrize(("csv_text", "message"), [
    (None, "no designs.csv; give a folder written by `resnet-compile sample`"),
    ("design,x\n../evil.yaml,1\n", "designs.csv:2: design '../evil.yaml' is not the name of a spec file"),
    ("name,x\na.yaml,1\n", "no designs listed"),
])
def test_sweep_and_analyze_refuse_folders_not_sampled(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      csv_text: str | None, message: str) -> None:
    if csv_text is not None:
        (tmp_path / "designs.csv").write_text(csv_text)
    for argv in (["sweep", str(tmp_path), "--dataset", "digits", "--epochs", "1"],
                 ["analyze", str(tmp_path), "-o", str(tmp_path / "r.html")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "runs").exists()


def test_designs_differing_outside_the_stages_are_two(tmp_path: Path) -> None:
    """Equal generated stages with another se_ratio or stem width are other networks."""
    f = tmp_path / "s.yaml"
    f.write_text("extends: regnetx_004\nspace:\n  sample:\n    regnet.se_ratio: {choice: [0.0, 0.25]}\n"
                 "    regnet.stem_width: {choice: [24, 32]}\n")
    kept, _ = sampling.sample(load_space(f), 4)
    assert len({(d.values["regnet.se_ratio"], d.values["regnet.stem_width"]) for d in kept}) == 4


def test_a_resnet_space_compiles_every_draw_and_keeps_only_what_fits(tmp_path: Path) -> None:
    """Without a generator every draw is compiled; the kept designs meet the window."""
    f = tmp_path / "s.yaml"
    f.write_text("extends: resnet18\nname: r18_space\ninput: {channels: 3, height: 64, width: 64}\n"
                 "space:\n  seed: 3\n  sample:\n    stages.0.depth: {uniform: [1, 4], q: 1}\n"
                 "    stages.layer4.depth: {uniform: [1, 4], q: 1}\n"
                 "    stages.3.channels: {choice: [256, 384, 512]}\n"
                 "  constraints:\n    params: [null, 1.4e7]\n    macs: [1.2e8, 1.8e8]\n"
                 "    widths: increasing\n")
    space = load_space(f)
    sampler = sampling.Sampler(space, 3)
    assert not sampler.estimate
    kept, tally = sampler.run(5)
    assert len(kept) == 5 and tally.compiled == tally.draws - tally.rejected["repeat"]
    for d in kept:
        net = rc.compile(d.net.spec.model_dump(mode="json", exclude_defaults=True))
        assert net.total_params <= 1.4e7 and 1.2e8 <= net.total_macs <= 1.8e8
        assert net.spec.stages[3].channels > 256  # widths increasing
        assert [s.depth for s in net.spec.stages][0] == d.values["stages.0.depth"]


def test_a_space_compiled_as_a_network_is_its_base_spec(tmp_path: Path) -> None:
    """`resnet-compile SPACE --check` (or --verify) shows the network the space varies, once its
    space: section has been checked; a broken section is still an error at its line."""
    path = write_space(tmp_path)
    net = rc.compile(path)
    assert net.total_params == rc.compile("regnetx_004").total_params
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text().replace("uniform: [12, 28]", "unifrom: [12, 28]"))
    with pytest.raises(rc.SpecError, match=r"broken\.yaml:\d+: .*unifrom"):
        rc.compile(broken)
