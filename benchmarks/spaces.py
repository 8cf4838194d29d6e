"""What design spaces cost.

(1) Sampling, whole process: `resnet-compile sample` of 500 distinct designs from pycls's default
RegNet space (depth, w0, wa, wm, group width as pycls/sweep/samplers.py draws them) inside
360-400 MF at 224x224 with 4 stages; goal: at most 10 s. Beside it, the same rejection with every
draw compiled (what pycls's own rejection amounts to with a compiler as its complexity function),
timed over its first draws and extrapolated to the draws the run needed. And a ResNet space
(depth per stage, groups, width per group, over resnext50_32x4d) inside 2-6 GFLOPs, where every
draw is compiled; designs per second for each.

(2) Sweep overhead: a sweep of 1-epoch digits designs through a local Ray (started and stopped
by the sweep, one trial at a time, each trial given both CPUs): its wall time beyond the designs'
epochs (Ray's start-up, scheduling and shut-down, each trial's imports, compile and data loading),
as a fraction of a design's 1-epoch training time, all timed within the one sweep.

    python benchmarks/spaces.py [--rounds 3] [--designs 4] [--out benchmarks/results/spaces.txt]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 10.0

REGNET_SPACE = """\
name: regnetx_space
input: {channels: 3, height: 224, width: 224}
num_classes: 1000
regnet: {depth: 22, w0: 24, wa: 24.48, wm: 2.54, group_width: 16}
space:
  seed: 0
  sample:
    regnet.depth:       {uniform: [12, 28], q: 1}
    regnet.w0:          {log_uniform: [8, 256], q: 8}
    regnet.wa:          {log_uniform: [8.0, 256.0], q: 0.1}
    regnet.wm:          {log_uniform: [2.0, 3.0], q: 0.001}
    regnet.group_width: {power2_or_log_uniform: [8, 128], q: 8}
  constraints:
    flops: [360e6, 400e6]
    stages: [4, 4]
"""
RESNET_SPACE = """\
extends: resnext50_32x4d
name: resnext_space
space:
  seed: 0
  sample:
    stages.0.depth: {uniform: [1, 6], q: 1}
    stages.1.depth: {uniform: [1, 8], q: 1}
    stages.2.depth: {uniform: [1, 12], q: 1}
    stages.3.depth: {uniform: [1, 6], q: 1}
    defaults.groups: {power2_uniform: [1, 64]}
    defaults.base_width: {power2_uniform: [4, 64]}
  constraints:
    flops: [2e9, 6e9]
"""
DIGITS_SPACE = """\
name: digits_space
input: {channels: 1, height: 16, width: 16}
num_classes: 10
stem:
  - {op: conv, name: conv1, channels: 16, kernel: 3}
  - {op: bn, name: bn1}
  - {op: relu, name: relu}
stages:
  - {block: basic, depth: 2, channels: 16}
  - {block: basic, depth: 2, channels: 32, stride: 2}
head: {pool: avg, dropout: 0.0}
space:
  seed: 0
  sample:
    stages.0.depth: {uniform: [1, 2], q: 1}
    head.dropout: {uniform: [0.0, 0.3], q: 0.1}
"""


def sample_run(space: Path, n: int, out: Path) -> tuple[float, str]:
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "resnet_compiler", "sample", str(space), "-n", str(n),
                        "-o", str(out), "--no-progress"], capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - start
    if r.returncode:
        raise SystemExit(f"sample failed: {r.stderr}")
    return took, r.stderr.strip().splitlines()[-1]


def compile_every_draw(space_file: Path, draws: int) -> float:
    """Seconds per draw when every draw is compiled (no screen, no estimate)."""
    from resnet_compiler.spaces.sample import Sampler
    from resnet_compiler.spaces.space import load_space
    space = load_space(space_file)
    space.max_draws = draws
    sampler = Sampler(space, 0, use_estimate=False)
    sampler.section = None  # no RegNet screen either: each draw compiled, then judged
    start = time.perf_counter()
    try:
        sampler.run(10**9)
    except Exception:  # noqa: BLE001 - NoDesigns at the bound is the point
        pass
    return (time.perf_counter() - start) / draws


def sampling(rounds: int, tmp: Path) -> list[str]:
    lines: list[str] = []
    regnet, resnet = tmp / "regnet.yaml", tmp / "resnet.yaml"
    regnet.write_text(REGNET_SPACE)
    resnet.write_text(RESNET_SPACE)
    times, summary = [], ""
    for k in range(rounds):
        took, summary = sample_run(regnet, 500, tmp / f"regnet{k}")
        times.append(took)
    best = min(times)
    draws = int(summary.split(" from ")[1].split(" draws")[0].replace(",", ""))
    per_draw = compile_every_draw(regnet, 300)
    lines += [f"RegNet space, 500 designs in 360-400 MF at 224x224, 4 stages (whole process, best of "
              f"{rounds}: {', '.join(f'{t:.2f}' for t in times)} s): {best:.2f} s, "
              f"{500 / best:.0f} designs/s; goal <= {GOAL:.0f} s: {'met' if best <= GOAL else 'NOT met'}",
              f"  {summary}",
              f"  compiling every draw instead: {per_draw * 1e3:.2f} ms a draw, {draws:,} draws -> "
              f"{per_draw * draws:.0f} s ({per_draw * draws / best:.0f}x)"]
    took, summary = sample_run(resnet, 100, tmp / "resnet")
    lines += [f"ResNeXt space (depth per stage, groups, width per group), 100 designs in 2-6 GFLOPs "
              f"(whole process): {took:.2f} s, {100 / took:.0f} designs/s", f"  {summary}"]
    return lines


def sweep_overhead(designs: int, tmp: Path) -> list[str]:
    """The sweep's time beyond training, all measured in the one sweep (the machine's other load
    then weighs on both alike): wall time, the trials' own time (result.json: imports, compile,
    data, epochs) and their epochs (metrics.csv)."""
    from resnet_compiler.cli import main
    from resnet_compiler.spaces.sweep import SweepOptions, sweep_folder
    (tmp / "digits.yaml").write_text(DIGITS_SPACE)
    folder = tmp / "digits"
    main(["sample", str(tmp / "digits.yaml"), "-n", str(designs), "-o", str(folder), "--no-progress"])
    opts = SweepOptions(dataset="digits", epochs=1, batch_size=32, lr=0.1, cpus_per_trial=2,
                        max_concurrent=1)
    start = time.perf_counter()
    sweep_folder(folder, opts)
    wall = time.perf_counter() - start
    runs = [folder / "runs" / p.stem for p in sorted(folder.glob("*.yaml"))]
    trials = sum(json.loads((r / "result.json").read_text())["seconds"] for r in runs)
    epochs = sum(_epoch_seconds(r) for r in runs)
    per_epoch = epochs / designs
    over = wall - epochs
    return [f"sweep of {designs} 1-epoch digits designs (16x16, one trial at a time, 2 CPUs a trial,"
            f" a local Ray started and stopped by the sweep): {wall:.1f} s; their epochs "
            f"{epochs:.1f} s ({per_epoch:.1f} s a design)",
            f"  overhead {over:.1f} s = {over / designs:.1f} s a design = {over / epochs:.2f}x a "
            f"design's 1-epoch training time: Ray's start-up, scheduling and shut-down "
            f"{wall - trials:.1f} s, each trial's imports, compile and data "
            f"{(trials - epochs) / designs:.1f} s"]


def _epoch_seconds(run: Path) -> float:
    import csv
    with open(run / "metrics.csv", newline="") as f:
        return sum(float(r["seconds"]) for r in csv.DictReader(f))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--designs", type=int, default=4)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    machine = f"{platform.machine()}, Python {platform.python_version()}"
    with tempfile.TemporaryDirectory() as t:
        lines = [f"design spaces ({machine})", *sampling(args.rounds, Path(t)),
                 *sweep_overhead(args.designs, Path(t))]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
