"""Training images/s of the code emitted for spec/zoo presets against the peer's own model.

For each preset: the emitted module and timm's (or torchvision's) model of that name, same
weights, same SGD step on the same synthetic batch, interleaved round by round so machine noise
hits both alike; the figure is the ratio of the medians (generated code should cost nothing).
On a GPU (`--device cuda`) both run with AMP (bf16) and channels_last.

    python benchmarks/zoo_train_throughput.py [--models resnet50_gn,ecaresnet50d] [--size 96]
        [--batch 32] [--steps 3] [--rounds 5] [--device cpu|cuda] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import timm
import torch

import resnet_compiler as rc

ROOT = Path(__file__).resolve().parent.parent
PEERS: dict[str, Callable[[], torch.nn.Module]] = {
    "resnet50_gn": lambda: timm.create_model("resnet50_gn"),
    "ecaresnet50d": lambda: timm.create_model("ecaresnet50d"),
    "resnetblur50": lambda: timm.create_model("resnetblur50"),
    "resnetv2_50x1_bit": lambda: timm.create_model("resnetv2_50x1_bit"),
    "skresnet18": lambda: timm.create_model("skresnet18"),
    "res2net50_26w_4s": lambda: timm.create_model("res2net50_26w_4s"),
}


def _step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
               device: str) -> float:
    """Seconds per SGD step (forward, loss, backward, update), after one warm-up step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def compare(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Images/s of ours and the peer's, median over interleaved rounds."""
    torch.manual_seed(0)
    peer = PEERS[name]()
    ours = rc.compile(ROOT / "spec" / "zoo" / f"{name}.yaml").build_torch()
    ours.load_state_dict(peer.state_dict(), strict=True)
    fmt = torch.channels_last if args.device == "cuda" else torch.contiguous_format
    models = {"ours": ours.to(args.device, memory_format=fmt).train(),
              "peer": peer.to(args.device, memory_format=fmt).train()}
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(args.device,
                                                                      memory_format=fmt)
    y = torch.randint(0, 1000, (args.batch,), generator=g).to(args.device)
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for key in order:
            times[key].append(_step_time(models[key], x, y, args.steps, args.device))
    out = {k: args.batch / statistics.median(v) for k, v in times.items()}
    out["ratio"] = out["ours"] / out["peer"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50_gn,ecaresnet50d")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    where = torch.cuda.get_device_name() if args.device == "cuda" else \
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}, {args.size}x{args.size}, batch {args.batch},"
          f" {args.rounds} interleaved rounds of {args.steps} steps"
          + (", AMP bf16 + channels_last" if args.device == "cuda" else ", fp32"))
    print(f"{'model':20} {'ours img/s':>11} {'peer img/s':>11} {'ours/peer':>10}")
    results = {}
    for name in args.models.split(","):
        r = compare(name, args)
        results[name] = r
        print(f"{name:20} {r['ours']:11.1f} {r['peer']:11.1f} {r['ratio']:10.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": where, **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
