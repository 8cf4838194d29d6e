"""Whole-process time of `resnet-compile` on resnet152 against a bare `python -c "import torch"`.

Runs are interleaved (ours, theirs, ours, ...) so machine noise hits both alike; the figure
that matters is the ratio of medians. Usage: python benchmarks/compile_speed.py [--runs 11]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--spec", default=str(ROOT / "spec" / "resnet152.yaml"))
    args = parser.parse_args()
    exe = shutil.which("resnet-compile") or str(Path(sys.executable).with_name("resnet-compile"))
    out = Path(tempfile.mkdtemp()) / "model.py"
    commands = {
        "resnet-compile --emit torch": [exe, args.spec, "--emit", "torch", "-o", str(out)],
        "resnet-compile --check": [exe, args.spec, "--check"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    for cmd in commands.values():  # warm the page cache
        _time(cmd)
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(_time(cmd))
    base = statistics.median(times["python -c 'import torch'"])
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"Python {platform.python_version()}, {args.runs} interleaved runs, spec {Path(args.spec).name}")
    print(f"{'command':32} {'median s':>9} {'vs import torch':>16}")
    for name, values in times.items():
        m = statistics.median(values)
        print(f"{name:32} {m:9.3f} {m / base:16.2f}")


if __name__ == "__main__":
    main()
