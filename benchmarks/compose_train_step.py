"""CPU training-step images/s of the code emitted for module-based zoo presets against timm's models.

resnest50d and skresnet18 are written in the spec language from modules and loops (SplitAttn,
SelectiveKernel); this checks that composing them costs nothing at training time. Both models get
the same weights and the same SGD step on the same synthetic batch; rounds alternate which model
runs first so machine noise hits both alike, and the figure is the median of per-round ratios.
Goal: ours / timm >= 0.95.

    python benchmarks/compose_train_step.py [--presets resnest50d,skresnet18] [--rounds 5]
        [--steps 3] [--threads 2] [--remark TEXT] [--append] [--out benchmarks/results/compose_train_step]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import timm
import torch
from torch import nn

import resnet_compiler as rc

ROOT = Path(__file__).resolve().parent.parent
SIZE, BATCH, CLASSES, WARMUP = 96, 32, 1000, 2
GOAL = 0.95
NOISY_SPREAD = 1.15  # a model's fastest round over its slowest beyond this: the machine was not quiet


class Trainer:
    """One model with its own SGD optimizer, kept across rounds so momentum buffers exist once."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.train()
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.model(x), y).backward()
        self.opt.step()

    def images_per_s(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step(x, y)
        return steps * x.shape[0] / (time.perf_counter() - start)


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compare(name: str, rounds: int, steps: int) -> dict:
    """Per-round images/s of ours and timm's, interleaved, order swapped every round."""
    torch.manual_seed(0)
    theirs = timm.create_model(name)
    ours = rc.compile(ROOT / "spec" / "zoo" / f"{name}.yaml").build_torch()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    trainers = {"ours": Trainer(ours), "timm": Trainer(theirs)}
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    for t in trainers.values():  # allocator, oneDNN primitive caches, momentum buffers
        for _ in range(WARMUP):
            t.step(x, y)
    rates: dict[str, list[float]] = {k: [] for k in trainers}
    for r in range(rounds):
        for key in (("ours", "timm") if r % 2 == 0 else ("timm", "ours")):
            rates[key].append(trainers[key].images_per_s(x, y, steps))
    ratios = [o / t for o, t in zip(rates["ours"], rates["timm"], strict=True)]
    return {
        "params": sum(p.numel() for p in ours.parameters()),
        "images_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        "rounds": {**rates, "ratio": ratios},
        "spread": {k: max(v) / min(v) for k, v in rates.items()},
    }


def noise_remarks(results: dict[str, dict], load: tuple[float, float], threads: int) -> list[str]:
    """Why the figures may not be trustworthy: busy machine, rounds that disagree."""
    out = []
    if max(load) > threads + 0.5:
        out.append(f"machine busy: 1-min load average {load[0]:.1f} before, {load[1]:.1f} after "
                   f"(>{threads} threads); absolute images/s are low and noisy, the interleaved "
                   "ratio less so")
    for name, r in results.items():
        worst = max(r["spread"], key=r["spread"].get)
        if r["spread"][worst] > NOISY_SPREAD:
            out.append(f"{name}: {worst}'s rounds vary {r['spread'][worst]:.2f}x (fastest/slowest)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="resnest50d,skresnet18")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="timed SGD steps per model per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--remark", action="append", default=[], help="note stored with the run")
    p.add_argument("--append", action="store_true", help="keep the runs already in OUT.json")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compose_train_step"),
                   help="writes OUT.json and OUT.txt")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    machine = (f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
               f"torch {torch.__version__}, timm {timm.__version__}")
    header = (f"{machine}\n{SIZE}x{SIZE}, batch {BATCH}, fp32 eager, SGD(lr=0.01, momentum=0.9), "
              f"{WARMUP} warm-up steps, {args.rounds} interleaved rounds of {args.steps} steps")
    lines = [header, f"{'preset':12} {'ours img/s':>11} {'timm img/s':>11} {'ratio med':>10} "
                     f"{'min':>6} {'max':>6}  goal >= {GOAL}"]
    print("\n".join(lines), flush=True)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    results = {}
    for name in args.presets.split(","):
        r = results[name] = compare(name, args.rounds, args.steps)
        ips, ratio = r["images_per_s"], r["ratio"]
        lines.append(f"{name:12} {ips['ours']:11.1f} {ips['timm']:11.1f} {ratio['median']:10.3f} "
                     f"{ratio['min']:6.3f} {ratio['max']:6.3f}  "
                     + ("met" if ratio["median"] >= GOAL else "NOT met"))
        print(lines[-1], flush=True)
    remarks = noise_remarks(results, (load_before, os.getloadavg()[0]), args.threads) + args.remark
    lines += [f"remark: {m}" for m in remarks]
    lines.append(f"wall time {time.perf_counter() - started:.0f} s")
    print("\n".join(lines[-len(remarks) - 1:]))

    run = {"machine": machine, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
           "config": {"input": f"3x{SIZE}x{SIZE}", "batch": BATCH, "warmup": WARMUP,
                      "rounds": args.rounds, "steps": args.steps, "threads": args.threads},
           "goal_ratio": GOAL, "results": results, "remarks": remarks}
    out = Path(args.out)
    json_path, txt_path = out.with_suffix(".json"), out.with_suffix(".txt")
    runs = json.loads(json_path.read_text())["runs"] if args.append and json_path.exists() else []
    json_path.write_text(json.dumps({"runs": [*runs, run]}, indent=1) + "\n")
    prior = txt_path.read_text() + "\n" if args.append and txt_path.exists() else ""
    txt_path.write_text(prior + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
