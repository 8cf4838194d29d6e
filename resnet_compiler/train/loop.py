"""The per-step and per-epoch work: the learning-rate schedule, the data loader, one epoch of training
and one pass of evaluation.

What is built once per run (model, optimiser, data) comes in from run.py; whatever differs across
torchrun ranks goes through distributed.py, so these functions read the same for one process or many.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .data import fit_batch
from .distributed import Dist, share_buffers_from_rank0, sum_across_ranks

if TYPE_CHECKING:  # torch is imported where it is used
    import torch

EVAL_BATCH = 256  # the smallest evaluation batch per rank


def lr_at(schedule: str, base: float, step: int, total: int, warmup: int = 0) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`: a linear rise over the first
    `warmup` steps (base/warmup, 2*base/warmup, ..., base), then the schedule over the rest."""
    if step < warmup:
        return base * (step + 1) / warmup
    step, total = step - warmup, total - warmup
    if schedule == "constant" or total <= 0:
        return base
    t = min(step, total) / total
    if schedule == "cosine":
        return 0.5 * base * (1.0 + math.cos(math.pi * t))
    return base * (0.1 ** ((t >= 0.5) + (t >= 0.75)))  # step


class _Batches:
    """Index a pair of in-memory tensors by a list of indices (one batch per item)."""

    def __init__(self, images: Any, labels: Any) -> None:
        self.images, self.labels = images, labels

    def __getitem__(self, idx: list[int]) -> tuple[Any, Any]:
        return self.images[idx], self.labels[idx]

    def __len__(self) -> int:
        return len(self.labels)


def make_loader(images: torch.Tensor, labels: torch.Tensor, dist: Dist, batch_size: int, seed: int,
                workers: int, pin_memory: bool) -> tuple[Any, Any]:
    """(loader, sampler): this rank's share of every epoch, `batch_size // world` images a batch,
    shuffled by `seed` and the epoch (call `sampler.set_epoch` before each)."""
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler
    sampler = DistributedSampler(range(len(labels)), num_replicas=dist.world, rank=dist.rank,
                                 shuffle=True, seed=seed, drop_last=False)
    loader = DataLoader(_Batches(images, labels),
                        sampler=BatchSampler(sampler, batch_size // dist.world, drop_last=False),
                        batch_size=None, num_workers=workers, pin_memory=pin_memory,
                        persistent_workers=workers > 0)
    return loader, sampler


@dataclass
class Trainer:
    """What an optimizer step needs, and the number of steps taken so far."""

    model: Any  # what the optimizer steps through: the bare module, maybe wrapped in DDP and compiled
    raw: Any  # the bare module: evaluation, buffers and checkpoints
    optimizer: Any
    scaler: Any
    device: torch.device
    amp: torch.dtype | None  # autocast dtype, None for full precision
    channels_last: bool
    channels: int  # the spec's input
    size: tuple[int, int]
    schedule: str
    base_lr: float
    total_steps: int
    step: int = 0
    warmup_steps: int = 0
    resize: str = "bilinear"  # the spec's input.resize
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None  # the spec's mean/std
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None  # training batches only
    label_smoothing: float = 0.0
    eval_modules: list[Any] = field(default_factory=list)  # norms kept in eval mode while training

    def train_mode(self) -> None:
        """The bare module in training mode, except the modules kept in eval mode."""
        self.raw.train()
        for m in self.eval_modules:
            m.eval()

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision at `amp`, or autocast explicitly off."""
        import torch
        if self.amp is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp)

    def prepare(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """A batch on the device as the network takes it: resized and converted to the spec's input,
        augmented (training only), normalised, in the memory format."""
        import torch
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = fit_batch(x.to(self.device, non_blocking=True), self.channels, self.size, self.resize)
        if train and self.augment is not None:
            x = self.augment(x)
        if self.normalize is not None:
            x = self.normalize(x)
        return x.contiguous(memory_format=fmt)


@dataclass
class EpochStats:
    """One epoch's sums over all ranks (loss * n, correct, n), last learning rate and duration."""

    sums: list[float]
    lr: float
    seconds: float


def train_step(t: Trainer, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One optimizer step at the schedule's rate; returns ([loss * n, correct, n], the rate)."""
    import torch
    import torch.nn.functional as F
    lr = lr_at(t.schedule, t.base_lr, t.step, t.total_steps, t.warmup_steps)
    for g in t.optimizer.param_groups:
        g["lr"] = lr
    x, y = t.prepare(xb, train=True), yb.to(t.device, non_blocking=True)
    with t.autocast():
        logits = t.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=t.label_smoothing)
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.step += 1
    with torch.no_grad():
        n = y.numel()
        return torch.stack([loss.detach().double() * n, (logits.argmax(1) == y).sum().double(),
                            torch.tensor(float(n), device=t.device, dtype=torch.float64)]), lr


def _progress_bar(total: int, desc: str, dist: Dist) -> Any:
    """A tqdm bar on stderr, shown by rank 0 on a terminal only."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
                disable=not (dist.main and sys.stderr.isatty()), dynamic_ncols=True)


def _synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so wall-clock times measure it (no-op on the CPU)."""
    if device.type == "cuda":
        import torch
        torch.cuda.synchronize(device)


def train_epoch(t: Trainer, loader: Any, dist: Dist, desc: str) -> EpochStats:
    """One pass over this rank's batches; sums are reduced over ranks and BN buffers taken from rank 0."""
    import torch
    t.train_mode()
    sums = torch.zeros(3, device=t.device, dtype=torch.float64)  # loss*n, correct, n
    bar = _progress_bar(len(loader), desc, dist)
    _synchronize(t.device)
    t0 = time.perf_counter()
    lr = t.base_lr
    for i, (xb, yb) in enumerate(loader):
        batch, lr = train_step(t, xb, yb)
        sums += batch
        bar.update(1)
        if not bar.disable and (i % 10 == 0 or i == len(loader) - 1):
            s = sums.tolist()
            bar.set_postfix(loss=f"{s[0] / s[2]:.4f}", acc=f"{s[1] / s[2]:.3f}", lr=f"{lr:.4f}")
    _synchronize(t.device)
    seconds = time.perf_counter() - t0
    bar.close()
    sum_across_ranks(sums, dist)
    share_buffers_from_rank0(t.raw, dist)
    return EpochStats(sums.tolist(), lr, seconds)


def check_finite(stats: EpochStats, epoch: int) -> None:
    """Stop a run whose loss overflowed (RuntimeError naming the epoch, 1-based)."""
    if not all(math.isfinite(v) for v in stats.sums):
        raise RuntimeError(f"the loss became {stats.sums[0]} in epoch {epoch}; lower the learning rate")


def evaluate(t: Trainer, images: torch.Tensor, labels: torch.Tensor, dist: Dist, batch: int) -> float:
    """Accuracy of the bare module in eval mode on every `world`-th example, combined over ranks."""
    import torch
    t.raw.eval()
    test_idx = torch.arange(dist.rank, len(labels), dist.world)
    batch = max(batch, EVAL_BATCH)
    correct = torch.zeros((), device=t.device, dtype=torch.int64)
    with torch.inference_mode(), t.autocast():
        for i in range(0, len(test_idx), batch):
            idx = test_idx[i:i + batch]
            x, y = t.prepare(images[idx]), labels[idx].to(t.device)
            correct += (t.raw(x).argmax(1) == y).sum()
    counts = torch.stack([correct, torch.tensor(len(test_idx), device=t.device)]).double()
    sum_across_ranks(counts, dist)
    return float(counts[0] / counts[1])


def metrics_row(epoch: int, stats: EpochStats, test_acc: float) -> dict[str, float]:
    """One row of metrics.csv (epoch 1-based)."""
    s = stats.sums
    return {"epoch": epoch, "train_loss": s[0] / s[2], "train_acc": s[1] / s[2], "test_acc": test_acc,
            "images_per_s": s[2] / stats.seconds, "lr": stats.lr, "seconds": stats.seconds}


def format_row(row: dict[str, float], epochs: int) -> str:
    """The line printed after each epoch."""
    return (f"epoch {int(row['epoch'])}/{epochs}  train loss {row['train_loss']:.4f}  train acc "
            f"{row['train_acc']:.4f}  test acc {row['test_acc']:.4f}  {row['images_per_s']:.1f} img/s  "
            f"lr {row['lr']:.4g}  {row['seconds']:.1f}s")
