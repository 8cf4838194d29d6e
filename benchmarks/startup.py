"""Whole-process start-up of `resnet-compile --check` and `--emit torch` on resnet152 (and `--check`
of the preset regnety_320, whose stages the RegNet generator writes) against a
bare `python -c "import torch"`, and the floor every run of the compiler pays (Python importing
yaml, pydantic and networkx), interleaved so that machine noise hits all alike. Goal: at most
0.15 of `import torch`.

    python benchmarks/startup.py [--rounds 7] [--out benchmarks/results/startup.txt]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.15


def _time(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup.txt"))
    args = p.parse_args()
    cli = [sys.executable, "-m", "resnet_compiler"]
    spec = "spec/resnet152.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "resnet-compile spec/resnet152.yaml --check": [*cli, spec, "--check"],
            "resnet-compile regnety_320 --check (by name, generated)": [*cli, "regnety_320", "--check"],
            "resnet-compile spec/resnet152.yaml --emit torch -o m.py":
                [*cli, spec, "--emit", "torch", "-o", str(Path(tmp) / "m.py")],
            'python -c "import yaml, pydantic, networkx" (floor)':
                [sys.executable, "-c", "import yaml, pydantic, networkx"],
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
        }
        # warm the file cache and write the bytecode, as an installed package has it (even where
        # PYTHONDONTWRITEBYTECODE is set, which would recompile each edited module every run)
        writes = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        for cmd in commands.values():
            _time(cmd, writes)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(_time(cmd))
    torch_time = statistics.median(times['python -c "import torch"'])
    lines = [f"{platform.processor() or platform.machine()}, Python {platform.python_version()},"
             f" median of {args.rounds} interleaved rounds",
             f"{'command':60s} {'median':>8s} {'vs import torch':>16s}"]
    for name, values in times.items():
        m = statistics.median(values)
        lines.append(f"{name:60s} {m:7.3f}s {m / torch_time:16.3f}")
    check = statistics.median(times["resnet-compile spec/resnet152.yaml --check"]) / torch_time
    lines.append(f"--check / import torch = {check:.3f} (goal <= {GOAL}:"
                 f" {'met' if check <= GOAL else 'NOT met'})")
    regnet = statistics.median(times["resnet-compile regnety_320 --check (by name, generated)"]) \
        / torch_time
    lines.append(f"regnety_320 --check / import torch = {regnet:.3f} (goal <= {GOAL}:"
                 f" {'met' if regnet <= GOAL else 'NOT met'})")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
