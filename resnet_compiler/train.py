"""`resnet-compile train SPEC`: train the emitted network, on one device or many under torchrun.

Defaults are the seed chapter's run (plain SGD, lr 0.05, batch 128, 10 epochs, images resized to
the spec's input) with one change: the learning rate follows a cosine schedule per step instead of
staying constant. At a constant rate, plain SGD's eval-mode accuracy (BatchNorm running statistics)
keeps moving from one epoch to the next, and the final epoch is the one a user keeps; annealing the
rate to zero makes the last epoch the settled one. Measured on digits (batch 32, 10 epochs): constant
went 96.9 -> 96.1 -> 98.1% over epochs 2-4 and ended at 97.8%; cosine ended at 98.3%.
`--schedule constant` gives the chapter's exact recipe.

Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (NCCL on GPUs,
gloo on CPUs), each rank reads its share of every epoch through a DistributedSampler, `--batch-size`
stays the global batch, and only rank 0 writes files and shows progress.

Files in --out, each rewritten atomically after every epoch: checkpoint.pt (the full training state
for --resume, and what `--emit onnx --weights` takes), model.pth (the bare state_dict, for plain
`model.load_state_dict(torch.load(path, weights_only=True))`), model.safetensors (the same
tensors), metrics.csv and curves.png. Nothing needs unpickling: torch.load(weights_only=True) reads
both .pt files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .args import Parser, nonnegative_float, nonnegative_int, positive_int
from .errors import UsageError

CHECKPOINT = "checkpoint.pt"
METRICS_COLUMNS = ("epoch", "train_loss", "train_acc", "test_acc", "images_per_s", "lr", "seconds")


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS
    p = Parser(prog="resnet-compile train", description=(
        "Train the network of SPEC (the chapter's defaults: SGD, lr 0.05, batch 128, 10 epochs, "
        "images resized to the spec's input). Under torchrun it runs DistributedDataParallel."))
    p.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=DATASETS, default="fashion-mnist",
                   help="fashion-mnist: IDX files in --data-dir; digits: scikit-learn's 8x8 digits "
                        "(offline, seeded 80/20 split); folder: one subfolder per class in --data-dir "
                        "(train/ and test/ subfolders, or a seeded 80/20 split)")
    d.add_argument("--data-dir", help="folder with the dataset files")
    d.add_argument("--download", action="store_true", help="fetch missing Fashion-MNIST files")
    d.add_argument("--workers", type=nonnegative_int, default=0,
                   help="DataLoader worker processes (default 0)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=positive_int, default=10, help="epochs (default 10)")
    o.add_argument("--batch-size", type=positive_int, default=128,
                   help="global batch size, split across ranks under torchrun (default 128)")
    o.add_argument("--lr", type=nonnegative_float, default=0.05, help="peak SGD learning rate (default 0.05)")
    o.add_argument("--momentum", type=nonnegative_float, default=0.0,
                   help="SGD momentum (default 0, as the chapter)")
    o.add_argument("--weight-decay", type=nonnegative_float, default=0.0, help="L2 weight decay (default 0)")
    o.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine",
                   help="learning rate per step: cosine to zero (default), step (x0.1 at 50%% and 75%%) "
                        "or constant (the chapter's)")
    o.add_argument("--seed", type=int, default=0, help="seed for initialisation and data order (default 0)")
    r = p.add_argument_group("run")
    r.add_argument("--out", help="output folder (default runs/SPEC_NAME)")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    r.add_argument("--overwrite", action="store_true", help="start afresh even if OUT/checkpoint.pt exists")
    r.add_argument("--stop-after", type=positive_int, metavar="EPOCH",
                   help="end this run after EPOCH epochs (the schedule still spans --epochs); "
                        "continue later with --resume")
    r.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when available, else CPU")
    r.add_argument("--amp", choices=("auto", "bf16", "fp16", "off"), default="auto",
                   help="mixed precision; auto: bf16 on GPUs that have it (else fp16), off on CPU")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: on for CUDA, off for CPU)")
    r.add_argument("--compile", action="store_true", help="torch.compile the model")
    r.add_argument("--compile-mode", choices=("auto", "default", "reduce-overhead", "max-autotune"),
                   default="auto", help="torch.compile mode; auto: reduce-overhead (CUDA graphs) on a "
                                        "single GPU, where a step of a small network is launch-bound, "
                                        "else default")
    r.add_argument("--print-weights-hash", action="store_true",
                   help="every rank prints a sha256 of its final weights (DDP replicas must agree)")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


# ------------------------------------------------------------------------------------ distribution

@dataclass
class Dist:
    """Where this process sits in a torchrun job (world 1 when run directly)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise UsageError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers") from None
        return cls(world, rank, local)


def _pick_device(choice: str, dist: Dist) -> Any:
    import torch
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", dist.local_rank % torch.cuda.device_count())


def _pick_amp(choice: str, device: Any) -> Any:
    import torch
    if choice == "off" or (choice == "auto" and device.type != "cuda"):
        return None
    if choice == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]


# ------------------------------------------------------------------------------------- schedule

def lr_at(schedule: str, base: float, step: int, total: int) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`."""
    if schedule == "constant" or total <= 0:
        return base
    t = min(step, total) / total
    if schedule == "cosine":
        return 0.5 * base * (1.0 + math.cos(math.pi * t))
    return base * (0.1 ** ((t >= 0.5) + (t >= 0.75)))  # step


# ------------------------------------------------------------------------------------ outputs

def _save_torch(path: Path, obj: Any) -> None:
    import torch

    from .outputs import write_atomic
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


def _write_metrics(out: Path, metrics: list[dict[str, float]]) -> None:
    from .outputs import write_atomic
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    w.writeheader()
    for m in metrics:
        w.writerow({k: (int(m[k]) if k == "epoch" else f"{m[k]:.6g}") for k in METRICS_COLUMNS})
    write_atomic(out / "metrics.csv", buf.getvalue())


def _plot(out: Path, metrics: list[dict[str, float]], title: str) -> None:
    """The chapter's figure: train loss, train acc and test acc per epoch on one axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .outputs import write_atomic
    epochs = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot(epochs, [m["train_loss"] for m in metrics], "-", label="train_loss")
    ax.plot(epochs, [m["train_acc"] for m in metrics], "--", label="train_acc")
    ax.plot(epochs, [m["test_acc"] for m in metrics], "-.", label="test_acc")
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(out / "curves.png", buf.getvalue())


def weights_hash(state_dict: dict[str, Any]) -> str:
    """sha256 over names, shapes, dtypes and bytes of every tensor, in key order."""
    import torch
    h = hashlib.sha256()
    for k, v in state_dict.items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A training checkpoint, read with torch.load(weights_only=True): nothing is unpickled."""
    import torch
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no checkpoint to resume from")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any load failure is a bad input file
        raise UsageError(f"{p}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ck, dict) or "state_dict" not in ck or "epoch" not in ck:
        raise UsageError(f"{p}: not a resnet-compile training checkpoint")
    return ck


# ----------------------------------------------------------------------------------------- main

class _Batches:
    """Index a pair of in-memory tensors by a list of indices (one batch per item)."""

    def __init__(self, images: Any, labels: Any) -> None:
        self.images, self.labels = images, labels

    def __getitem__(self, idx: list[int]) -> tuple[Any, Any]:
        return self.images[idx], self.labels[idx]

    def __len__(self) -> int:
        return len(self.labels)


def main(argv: list[str]) -> int:
    """Entry point of `resnet-compile train`; returns the exit code."""
    args = build_parser().parse_args(argv)
    dist = Dist.from_env()
    import torch
    prev_det = torch.are_deterministic_algorithms_enabled()
    initialised = False
    try:
        if dist.world > 1:
            import torch.distributed as tdist
            device = _pick_device(args.device, dist)
            if device.type == "cuda":
                torch.cuda.set_device(device)
            tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            initialised = True
        return _train(args, dist)
    finally:
        torch.use_deterministic_algorithms(prev_det)
        if initialised:
            import torch.distributed as tdist
            tdist.destroy_process_group()


def _log(dist: Dist, msg: str) -> None:
    if dist.main:
        print(msg, file=sys.stderr, flush=True)


def _train(args: argparse.Namespace, dist: Dist) -> int:  # noqa: C901 - one linear recipe
    import torch
    import torch.nn.functional as F
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    from .compiler import compile as compile_spec
    from .data import check_channels, download_fashion_mnist, fit_batch, load_dataset

    net = compile_spec(args.spec)
    channels, height, width = net.input_shape
    num_classes = net.graph.graph["num_classes"]
    out = Path(args.out or Path("runs") / net.name)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    ck_path = out / CHECKPOINT
    if ck_path.exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{ck_path} exists: add --resume to continue that run, --overwrite to start "
                         f"afresh, or choose another --out")
    if args.batch_size % dist.world:
        raise UsageError(f"--batch-size {args.batch_size} does not split evenly across {dist.world} ranks")
    device = _pick_device(args.device, dist)
    amp = _pick_amp(args.amp, device)
    channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last

    if args.download and args.dataset == "fashion-mnist" and args.data_dir:
        if dist.main:  # one rank fetches, the others wait for the files
            download_fashion_mnist(args.data_dir)
        if dist.world > 1:
            torch.distributed.barrier()
    elif args.download:
        raise UsageError("--download fetches Fashion-MNIST: it needs --dataset fashion-mnist --data-dir DIR")
    data = load_dataset(args.dataset, args.data_dir, channels, (height, width), seed=args.seed)
    check_channels(data.image_shape[0], channels)
    top = int(max(data.train_labels.max(), data.test_labels.max()))
    if top >= num_classes:
        raise UsageError(f"the {data.name} labels go up to {top}, but the spec has num_classes "
                         f"{num_classes}")

    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    model = net.build_torch().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)

    spec_json = json.dumps(net.spec.model_dump(mode="json"), sort_keys=True)
    sha = net.graph.graph["spec_sha256"]
    start_epoch, metrics = 0, []
    if args.resume:
        ck = load_checkpoint(ck_path)
        if ck.get("spec_sha256") not in (None, sha):
            raise UsageError(f"{ck_path}: was trained from a different spec than {args.spec}")
        try:
            model.load_state_dict(ck["state_dict"])
        except RuntimeError as e:
            raise UsageError(f"{ck_path}: weights do not fit {args.spec}: {str(e).splitlines()[0]}") from None
        optimizer.load_state_dict(ck["optimizer"])
        if ck.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(ck["scaler"])
        start_epoch, metrics = int(ck["epoch"]), list(ck.get("metrics", []))
        if isinstance(ck.get("rng"), dict) and isinstance(ck["rng"].get("torch"), torch.Tensor):
            torch.set_rng_state(ck["rng"]["torch"])
        if start_epoch >= args.epochs:
            _log(dist, f"{ck_path}: already trained {start_epoch} of {args.epochs} epochs; nothing to do")
            return 0

    raw = model
    train_model: Any = model
    if dist.world > 1:
        import warnings

        from torch.nn.parallel import DistributedDataParallel as DDP
        # oneDNN's 1x1-conv weight grads come back in another stride order: a copy, not an error
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        mode = args.compile_mode
        if mode == "auto":
            mode = "reduce-overhead" if device.type == "cuda" and dist.world == 1 else "default"
        train_model = torch.compile(train_model, mode=mode)

    per_rank = args.batch_size // dist.world
    sampler = DistributedSampler(range(len(data.train_labels)), num_replicas=dist.world, rank=dist.rank,
                                 shuffle=True, seed=args.seed, drop_last=False)
    loader = DataLoader(_Batches(data.train_images, data.train_labels),
                        sampler=BatchSampler(sampler, per_rank, drop_last=False), batch_size=None,
                        num_workers=args.workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.workers > 0)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * args.epochs
    test_idx = torch.arange(dist.rank, len(data.test_labels), dist.world)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp is not None \
        else (lambda: torch.autocast(device.type, enabled=False))
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def prepare(x: Any) -> Any:
        x = fit_batch(x.to(device, non_blocking=True), channels, (height, width))
        return x.contiguous(memory_format=fmt)

    def evaluate() -> float:
        raw.eval()
        correct = torch.zeros((), device=device, dtype=torch.int64)
        with torch.inference_mode(), autocast():
            for i in range(0, len(test_idx), max(per_rank, 256)):
                idx = test_idx[i:i + max(per_rank, 256)]
                x, y = prepare(data.test_images[idx]), data.test_labels[idx].to(device)
                correct += (raw(x).argmax(1) == y).sum()
        counts = torch.stack([correct, torch.tensor(len(test_idx), device=device)]).double()
        if dist.world > 1:
            torch.distributed.all_reduce(counts)
        return float(counts[0] / counts[1])

    amp_name = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]
    _log(dist, f"training {net.name} ({net.total_params:,} params) on {data.name}: "
               f"{len(data.train_labels)} train / {len(data.test_labels)} test images, "
               f"{'x'.join(map(str, data.image_shape))} -> {channels}x{height}x{width}")
    _log(dist, f"world size: {dist.world} | device {device}{' (DDP)' if dist.world > 1 else ''} | "
               f"batch {args.batch_size} ({per_rank}/rank) | SGD lr {args.lr:g} momentum {args.momentum:g} "
               f"wd {args.weight_decay:g} {args.schedule} | amp {amp_name} | channels_last "
               f"{'on' if channels_last else 'off'} | compile {'on' if args.compile else 'off'} | "
               f"epochs {start_epoch + 1}..{args.epochs} | out {out}")
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm
    last_epoch = min(args.epochs, args.stop_after or args.epochs)
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, last_epoch):
        sampler.set_epoch(epoch)
        raw.train()
        sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss*n, correct, n
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}", file=sys.stderr,
                   leave=False, disable=not (dist.main and sys.stderr.isatty()), dynamic_ncols=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        lr = args.lr
        for i, (xb, yb) in enumerate(loader):
            lr = lr_at(args.schedule, args.lr, step, total_steps)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = prepare(xb), yb.to(device, non_blocking=True)
            with autocast():
                logits = train_model(x)
                loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            with torch.no_grad():
                n = y.numel()
                sums += torch.stack([loss.detach().double() * n, (logits.argmax(1) == y).sum().double(),
                                     torch.tensor(float(n), device=device, dtype=torch.float64)])
            bar.update(1)
            if not bar.disable and (i % 10 == 0 or i == steps_per_epoch - 1):
                s = sums.tolist()
                bar.set_postfix(loss=f"{s[0] / s[2]:.4f}", acc=f"{s[1] / s[2]:.3f}", lr=f"{lr:.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        bar.close()
        if dist.world > 1:
            torch.distributed.all_reduce(sums)
            for b in raw.buffers():  # BN running stats drift per rank; keep rank 0's everywhere
                torch.distributed.broadcast(b, 0)
        s = sums.tolist()
        if not all(math.isfinite(v) for v in s):
            raise RuntimeError(f"the loss became {s[0]} in epoch {epoch + 1}; lower --lr")
        test_acc = evaluate()
        row = {"epoch": epoch + 1, "train_loss": s[0] / s[2], "train_acc": s[1] / s[2], "test_acc": test_acc,
               "images_per_s": s[2] / seconds, "lr": lr, "seconds": seconds}
        metrics.append(row)
        if dist.main:
            print(f"epoch {epoch + 1}/{args.epochs}  train loss {row['train_loss']:.4f}  train acc "
                  f"{row['train_acc']:.4f}  test acc {test_acc:.4f}  {row['images_per_s']:.1f} img/s  "
                  f"lr {lr:.4g}  {seconds:.1f}s", flush=True)
            _save_all(out, raw, optimizer, scaler, metrics, epoch + 1, args, spec_json, sha, step,
                      total_steps, steps_per_epoch, net.name)
    if args.print_weights_hash:
        print(f"rank {dist.rank} weights sha256 {weights_hash(raw.state_dict())}", flush=True)
    if dist.main:
        print(f"wrote {out / CHECKPOINT}, model.pth, model.safetensors, metrics.csv, curves.png",
              file=sys.stderr)
    return 0


def _save_all(out: Path, raw: Any, optimizer: Any, scaler: Any, metrics: list[dict[str, float]], epoch: int,
              args: argparse.Namespace, spec_json: str, sha: str, step: int, total_steps: int,
              steps_per_epoch: int, name: str) -> None:
    import torch
    state = {k: v.detach().cpu().contiguous() for k, v in raw.state_dict().items()}
    config = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool)) or v is None}
    ck = {
        "format": "resnet-compiler-training-checkpoint",
        "state_dict": state,
        "spec": spec_json,
        "spec_sha256": sha,
        "epoch": epoch,
        "metrics": [dict(m) for m in metrics],
        "optimizer": optimizer.state_dict(),
        "scheduler": {"name": args.schedule, "base_lr": args.lr, "step": step, "total_steps": total_steps,
                      "steps_per_epoch": steps_per_epoch},
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "rng": {"torch": torch.get_rng_state()},
        "args": config,
    }
    _save_torch(out / CHECKPOINT, ck)
    _save_torch(out / "model.pth", state)
    from safetensors.torch import save as st_save

    from .outputs import write_atomic
    meta = {"spec_sha256": sha, "epoch": str(epoch)}
    write_atomic(out / "model.safetensors", st_save(state, metadata=meta))
    _write_metrics(out, metrics)
    _plot(out, metrics, f"{name} on {args.dataset}")
