"""Whole-zoo figures: the verification of every preset against its peer (`pytest -m zoo`), model by
model and in total, and the compile of every preset in one process (median per preset).

    python benchmarks/zoo.py [--workers 2] [--skip-verify] [--csv zoo_times.csv]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def verify(workers: int) -> list[tuple[str, float, str]]:
    """(preset, seconds, outcome) of each zoo test, from pytest's junit report."""
    with tempfile.TemporaryDirectory() as d:
        report = Path(d) / "zoo.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-m", "zoo", "-q", "-n", str(workers),
                        "-p", "no:cacheprovider", f"--junitxml={report}", "tests/test_whole_zoo.py"],
                       cwd=ROOT, check=False)
        rows = []
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("name", "")
            outcome = "failed" if case.find("failure") is not None or case.find("error") is not None \
                else "ok"
            preset = name.partition("[")[2].rstrip("]") or name
            rows.append((preset, float(case.get("time", 0.0)), outcome))
    return sorted(rows, key=lambda r: -r[1])


def compile_all() -> tuple[int, float, float]:
    """(presets, median seconds per compile, total seconds), every preset compiled in this process
    after a warm-up compile."""
    import resnet_compiler as rc
    names = rc.list_models()
    rc.compile(names[0])
    times = []
    for name in names:
        t = time.perf_counter()
        rc.compile(name)
        times.append(time.perf_counter() - t)
    return len(names), statistics.median(times), sum(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--csv", type=Path, help="write preset,seconds,outcome here")
    args = parser.parse_args()
    n, median, total = compile_all()
    print(f"compile of every preset in one process: {n} presets, median {median * 1e3:.1f} ms, "
          f"total {total:.1f} s")
    if args.skip_verify:
        return 0
    t = time.perf_counter()
    rows = verify(args.workers)
    wall = time.perf_counter() - t
    failed = [r for r in rows if r[2] != "ok"]
    print(f"whole-zoo verification: {len(rows)} tests, {len(failed)} failed, {wall:.0f} s wall "
          f"with {args.workers} workers, {sum(r[1] for r in rows):.0f} s of test time")
    print("slowest:", ", ".join(f"{p} {s:.1f} s" for p, s, _ in rows[:8]))
    print(f"median per model {statistics.median(r[1] for r in rows):.1f} s")
    if args.csv:
        args.csv.write_text("preset,seconds,outcome\n"
                            + "".join(f"{p},{s:.2f},{o}\n" for p, s, o in rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
