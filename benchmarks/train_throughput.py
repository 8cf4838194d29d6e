"""Training images/s of the emitted seed network vs the same network written by hand (eager fp32 NCHW).

Both run the same SGD step on the same synthetic 96x96 batch, interleaved round by round so that
machine noise hits both alike; the figure is the median over rounds. The hand-written reference
follows the seed chapter's Residual/ResNet-18 (convs with bias, a strided 1x1 conv shortcut).

    python benchmarks/train_throughput.py [--batch 128] [--steps 3] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
SEED_SPEC = ROOT / "spec" / "resnet18_fashion_mnist.yaml"


class Residual(nn.Module):
    """The chapter's residual block: two 3x3 convs, an optional strided 1x1 conv on the shortcut."""

    def __init__(self, in_ch: int, out_ch: int, use_1x1conv: bool = False, strides: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv3 = nn.Conv2d(in_ch, out_ch, 1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        return F.relu(y + x)


class ReferenceResNet18(nn.Module):
    """ResNet-18 for 1x96x96 Fashion-MNIST as the chapter builds it."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        blocks, in_ch = [], 64
        for i, ch in enumerate((64, 128, 256, 512)):
            for j in range(2):
                first = j == 0 and i != 0
                blocks.append(Residual(in_ch, ch, use_1x1conv=first, strides=2 if first else 1))
                in_ch = ch
        self.body = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


def emitted_model() -> nn.Module:
    import resnet_compiler as rc
    return rc.compile(SEED_SPEC).build_torch()


def time_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Images/s over `steps` SGD steps (after the caller's warm-up)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * x.shape[0] / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="timed SGD steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write the figures as JSON here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    x, y = torch.rand(args.batch, 1, 96, 96), torch.randint(0, 10, (args.batch,))
    models = {"emitted": emitted_model().train(), "hand-written": ReferenceResNet18().train()}
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    assert n_params["emitted"] == n_params["hand-written"], n_params
    for m in models.values():  # warm-up: allocator, oneDNN primitive caches
        time_steps(m, x, y, 1)
    rates: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for k, m in models.items():
            rates[k].append(time_steps(m, x, y, args.steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "batch": args.batch, "input": "1x96x96", "steps": args.steps,
        "rounds": args.rounds, "params": n_params["emitted"], "images_per_s": med, "all_rounds": rates,
        "ratio_emitted_over_hand_written": med["emitted"] / med["hand-written"],
    }
    print(f"{'model':14} {'images/s':>10}   (median of {args.rounds} rounds x {args.steps} steps, "
          f"batch {args.batch}, {torch.get_num_threads()} threads)")
    for k, v in med.items():
        print(f"{k:14} {v:10.1f}   rounds: {', '.join(f'{r:.1f}' for r in rates[k])}")
    print(f"emitted / hand-written: {result['ratio_emitted_over_hand_written']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
