"""Compile speed of resnet-compiler, in two parts.

process:   whole-process time of `resnet-compile` on resnet152 (--emit torch, --check) against a bare
           `python -c "import torch"`. Runs are interleaved (ours, theirs, ours, ...) so machine noise
           hits both alike; the figure that matters is the ratio of medians. Goal: --check <= 0.2.
inprocess: `rc.compile(dict)` of resnet50 and resnet152 for the current package against the package at
           git commit a08b960 (extracted with `git archive` into a temporary folder). Each variant runs
           in its own subprocess, old and new interleaved for several rounds; the parent takes the
           median across rounds. "repeated" is the median of repeated compiles of one spec after a
           warm-up (what a design-space sweep pays); "first" is the first compile of a spec in a fresh
           process after `import resnet_compiler` and one compile of resnet18 (library warm, this
           spec's blocks not). Goal: repeated ratio new/old <= 0.10.

Usage: python benchmarks/compile_speed.py [--runs 11] [--rounds 5] [--only inprocess|process]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "spec"
OLD_COMMIT = "a08b960"
INPROCESS_SPECS = ("resnet50", "resnet152")
WARM_SPEC = "resnet18"
REPEATS = 15
PROCESS_GOAL = 0.2
REPEATED_GOAL = 0.10


# ---------------------------------------------------------------- worker (runs in a subprocess)


def _load_specs(names: list[str]) -> dict[str, dict[str, Any]]:
    """Load each named spec from spec/ once with yaml.safe_load."""
    import yaml

    return {name: yaml.safe_load((SPEC_DIR / f"{name}.yaml").read_text()) for name in names}


def _import_package(package_root: str) -> Any:
    """Import resnet_compiler with package_root first on sys.path; fail if another copy is imported."""
    sys.path.insert(0, package_root)
    import resnet_compiler as rc

    expected = Path(package_root).resolve() / "resnet_compiler"
    if Path(rc.__file__).resolve().parent != expected:
        raise SystemExit(f"imported {rc.__file__}, expected a package under {expected}")
    return rc


def _time_compile(rc: Any, spec: dict[str, Any]) -> float:
    """Seconds for one rc.compile of a private copy of spec (the copy is made outside the timing)."""
    doc = copy.deepcopy(spec)
    start = time.perf_counter()
    rc.compile(doc)
    return time.perf_counter() - start


def _worker_repeated(rc: Any, specs: dict[str, dict[str, Any]], repeats: int) -> None:
    """Print, per spec, the median of `repeats` compiles after one warm-up compile."""
    for name, spec in specs.items():
        _time_compile(rc, spec)
        print(name, statistics.median(_time_compile(rc, spec) for _ in range(repeats)))


def _worker_first(rc: Any, specs: dict[str, dict[str, Any]]) -> None:
    """Print the time of the first compile of the one spec, after one compile of WARM_SPEC."""
    (name, spec), = specs.items()
    _time_compile(rc, _load_specs([WARM_SPEC])[WARM_SPEC])
    print(name, _time_compile(rc, spec))


def worker(mode: str, package_root: str, names: list[str], repeats: int) -> None:
    """Entry point of a measuring subprocess: specs are loaded before the package is imported."""
    specs = _load_specs(names)
    rc = _import_package(package_root)
    if mode == "repeated":
        _worker_repeated(rc, specs, repeats)
    else:
        _worker_first(rc, specs)


# ---------------------------------------------------------------- parent: in-process comparison


def _extract_old(dest: Path) -> Path:
    """Extract resnet_compiler as it was at OLD_COMMIT into dest; return dest."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "resnet_compiler"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _run_worker(mode: str, package_root: Path, names: list[str], cwd: Path) -> dict[str, float]:
    """Run one measuring subprocess and parse its 'name seconds' lines."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--package-root",
           str(package_root), "--specs", *names, "--repeats", str(REPEATS)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=cwd).stdout
    return {name: float(value) for name, value in (line.split() for line in out.splitlines())}


def _one_round(roots: dict[str, Path], cwd: Path, flip: bool) -> dict[tuple[str, str, str], float]:
    """One round: repeated and first for each variant, interleaved; flip swaps the order of variants."""
    variants = list(roots)[::-1] if flip else list(roots)
    result: dict[tuple[str, str, str], float] = {}
    jobs = [("repeated", list(INPROCESS_SPECS))] + [("first", [name]) for name in INPROCESS_SPECS]
    for mode, names in jobs:
        for variant in variants:
            for name, value in _run_worker(mode, roots[variant], names, cwd).items():
                result[(variant, mode, name)] = value
    return result


def _inprocess_medians(rounds: int) -> dict[tuple[str, str, str], float]:
    """Median across rounds of each (variant, mode, spec) figure."""
    with tempfile.TemporaryDirectory() as tmp:
        old_root = _extract_old(Path(tmp) / "old")
        roots = {"old": old_root, "new": ROOT}
        samples: dict[tuple[str, str, str], list[float]] = {}
        for i in range(rounds):
            for key, value in _one_round(roots, Path(tmp), flip=bool(i % 2)).items():
                samples.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in samples.items()}


def report_inprocess(rounds: int) -> None:
    """Print the in-process table: new and old ms per spec and mode, and the ratio new/old."""
    medians = _inprocess_medians(rounds)
    print(f"\n== in-process rc.compile(dict): current tree vs {OLD_COMMIT}, {rounds} interleaved rounds")
    print(f"   repeated = median of {REPEATS} compiles after 1 warm-up; "
          f"first = first compile after import + 1 {WARM_SPEC} compile")
    print(f"{'spec':12} {'mode':9} {'new ms':>9} {'old ms':>9} {'new/old':>8}")
    for name in INPROCESS_SPECS:
        for mode in ("repeated", "first"):
            new, old = medians[("new", mode, name)], medians[("old", mode, name)]
            print(f"{name:12} {mode:9} {new * 1e3:9.2f} {old * 1e3:9.2f} {new / old:8.3f}")
    for name in INPROCESS_SPECS:
        ratio = medians[("new", "repeated", name)] / medians[("old", "repeated", name)]
        verdict = "met" if ratio <= REPEATED_GOAL else "NOT met"
        print(f"goal: repeated ratio <= {REPEATED_GOAL:.2f}  {name}: {ratio:.3f}  {verdict}")


# ---------------------------------------------------------------- parent: whole-process comparison


def _time(cmd: list[str]) -> float:
    """Wall-clock seconds of one subprocess run."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def _process_commands(spec: str, out: Path) -> dict[str, list[str]]:
    """The commands of the whole-process comparison, by label; the baseline is the last."""
    exe = shutil.which("resnet-compile") or str(Path(sys.executable).with_name("resnet-compile"))
    return {
        "resnet-compile --emit torch": [exe, spec, "--emit", "torch", "-o", str(out)],
        "resnet-compile --check": [exe, spec, "--check"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }


def report_process(runs: int, spec: str) -> None:
    """Print whole-process medians and their ratio to `import torch`, and the --check goal."""
    with tempfile.TemporaryDirectory() as tmp:
        commands = _process_commands(spec, Path(tmp) / "model.py")
        for cmd in commands.values():  # warm the page cache
            _time(cmd)
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                times[name].append(_time(cmd))
    base = statistics.median(times["python -c 'import torch'"])
    print(f"\n== whole process: {runs} interleaved runs, spec {Path(spec).name}")
    print(f"{'command':32} {'median s':>9} {'vs import torch':>16}")
    for name, values in times.items():
        m = statistics.median(values)
        print(f"{name:32} {m:9.3f} {m / base:16.2f}")
    ratio = statistics.median(times["resnet-compile --check"]) / base
    verdict = "met" if ratio <= PROCESS_GOAL else "NOT met"
    print(f"goal: resnet-compile --check {Path(spec).stem} / import torch <= {PROCESS_GOAL:.2f}  "
          f"{ratio:.2f}  {verdict}")


# ---------------------------------------------------------------- command line


def _parse_args() -> argparse.Namespace:
    """Parse the command line (the --worker options are internal)."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11, help="whole-process runs (default 11)")
    parser.add_argument("--rounds", type=int, default=5, help="in-process rounds (default 5)")
    parser.add_argument("--only", choices=("inprocess", "process"), help="run only one part")
    parser.add_argument("--spec", default=str(SPEC_DIR / "resnet152.yaml"), help="whole-process spec")
    parser.add_argument("--worker", choices=("repeated", "first"), help=argparse.SUPPRESS)
    parser.add_argument("--package-root", help=argparse.SUPPRESS)
    parser.add_argument("--specs", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=REPEATS, help=argparse.SUPPRESS)
    return parser.parse_args()


def _header() -> str:
    """One line naming the machine."""
    return (f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


def main() -> None:
    """Run the worker when asked to, else the selected parts of the benchmark."""
    args = _parse_args()
    if args.worker:
        worker(args.worker, args.package_root, args.specs, args.repeats)
        return
    print(_header())
    if args.only in (None, "inprocess"):
        report_inprocess(args.rounds)
    if args.only in (None, "process"):
        report_process(args.runs, args.spec)


if __name__ == "__main__":
    main()
