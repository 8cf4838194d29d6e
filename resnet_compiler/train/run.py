"""The training recipe from spec to output files, in the order it happens: compile the spec and
check the run folder, load the data, build model and optimiser, resume, then train epoch by epoch.

It wires the other modules together: option checks come from options.py, rank handling from
distributed.py, the steps from loop.py and the files from checkpoint.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data import Dataset, check_channels, download_fashion_mnist, load_dataset
from ..errors import UsageError
from . import options
from .checkpoint import CHECKPOINT, RunRecord, restore, save_outputs, weights_hash
from .distributed import Dist, barrier, log, wrap_ddp
from .loop import Trainer, check_finite, evaluate, format_row, make_loader, metrics_row, train_epoch

if TYPE_CHECKING:  # torch is imported where it is used
    import torch


@dataclass
class Plan:
    """The compiled network, the input it takes and the folder its run writes to."""

    net: Any  # a CompiledNetwork
    out: Path
    channels: int
    size: tuple[int, int]

    @property
    def ck_path(self) -> Path:
        """The run's checkpoint file."""
        return self.out / CHECKPOINT


@contextmanager
def deterministic_setting_kept() -> Iterator[None]:
    """Restore torch's deterministic-algorithms flag when the block ends (training sets it on CPUs)."""
    import torch
    prev = torch.are_deterministic_algorithms_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


def plan_run(args: argparse.Namespace, dist: Dist) -> Plan:
    """Compile the spec and check the output folder and the options that depend on it."""
    from ..compiler import compile as compile_spec
    net = compile_spec(args.spec)
    if net.graph.graph.get("outputs"):  # the model returns a list of feature maps
        raise UsageError(f"{args.spec}: training needs a classifier that returns logits alone;"
                         " remove outputs: (and head: none) to train, then reuse the weights")
    channels, height, width = net.input_shape
    out = Path(args.out or Path("runs") / net.name)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    plan = Plan(net, out, channels, (height, width))
    options.check_fresh_start(args, plan.ck_path)
    options.check_batch_split(args.batch_size, dist.world)
    return plan


def load_data(args: argparse.Namespace, dist: Dist, plan: Plan) -> Dataset:
    """The dataset, fetched first if asked (by rank 0 while the others wait), checked against the spec."""
    options.check_data(args)
    if args.download:
        if dist.main:
            download_fashion_mnist(args.data_dir)
        barrier(dist)
    data = load_dataset(args.dataset, args.data_dir, plan.channels, plan.size, seed=args.seed)
    check_channels(data.image_shape[0], plan.channels)
    num_classes = plan.net.graph.graph["num_classes"]
    top = int(max(data.train_labels.max(), data.test_labels.max()))
    if top >= num_classes:
        raise UsageError(f"the {data.name} labels go up to {top}, but the spec has num_classes "
                         f"{num_classes}")
    return data


def pick_amp(choice: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for 'auto', 'bf16', 'fp16' or 'off' (auto: bf16 or fp16 on GPUs, none on CPUs)."""
    import torch
    if choice == "off" or (choice == "auto" and device.type != "cuda"):
        return None
    if choice == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def configure_torch(device: torch.device, seed: int) -> None:
    """Deterministic kernels on the CPU, fast ones (cuDNN autotuning, TF32) on GPUs; seed the RNG."""
    import torch
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(seed)


def build_trainer(args: argparse.Namespace, plan: Plan, device: torch.device) -> Trainer:
    """The seeded model on `device` with its SGD optimizer and loss scaler (schedule length set later)."""
    import torch
    amp = pick_amp(args.amp, device)
    channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    configure_torch(device, args.seed)
    model = plan.net.build_torch().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    return Trainer(model, model, optimizer, scaler, device, amp, channels_last, plan.channels, plan.size,
                   args.schedule, args.lr, total_steps=0)


def wrap_model(t: Trainer, args: argparse.Namespace, dist: Dist) -> None:
    """Wrap the trained module in DDP under torchrun, then torch.compile it if asked."""
    import torch
    t.model = wrap_ddp(t.raw, dist, t.device)
    if args.compile:
        mode = args.compile_mode
        if mode == "auto":
            mode = "reduce-overhead" if t.device.type == "cuda" and dist.world == 1 else "default"
        t.model = torch.compile(t.model, mode=mode)


def log_header(args: argparse.Namespace, dist: Dist, plan: Plan, data: Dataset, t: Trainer,
               start_epoch: int) -> None:
    """The two lines that open a run: the network and data, then the settings."""
    import torch
    net, (height, width) = plan.net, plan.size
    amp_name = {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[t.amp]
    log(dist, f"training {net.name} ({net.total_params:,} params) on {data.name}: "
              f"{len(data.train_labels)} train / {len(data.test_labels)} test images, "
              f"{'x'.join(map(str, data.image_shape))} -> {plan.channels}x{height}x{width}")
    log(dist, f"world size: {dist.world} | device {t.device}{' (DDP)' if dist.world > 1 else ''} | "
              f"batch {args.batch_size} ({args.batch_size // dist.world}/rank) | SGD lr {args.lr:g} "
              f"momentum {args.momentum:g} wd {args.weight_decay:g} {args.schedule} | amp {amp_name} | "
              f"channels_last {'on' if t.channels_last else 'off'} | "
              f"compile {'on' if args.compile else 'off'} | "
              f"epochs {start_epoch + 1}..{args.epochs} | out {plan.out}")


def run_epochs(args: argparse.Namespace, dist: Dist, plan: Plan, data: Dataset, t: Trainer,
               start_epoch: int, metrics: list[dict[str, float]]) -> None:
    """Train from `start_epoch` to the last epoch of this run; rank 0 reports and saves after each."""
    loader, sampler = make_loader(data.train_images, data.train_labels, dist, args.batch_size, args.seed,
                                  args.workers, pin_memory=t.device.type == "cuda")
    t.total_steps = len(loader) * args.epochs
    t.step = start_epoch * len(loader)
    record = RunRecord(json.dumps(plan.net.spec.model_dump(mode="json"), sort_keys=True),
                       plan.net.graph.graph["spec_sha256"], options.plain_values(args), args.schedule,
                       args.lr, t.total_steps, len(loader), f"{plan.net.name} on {args.dataset}")
    log_header(args, dist, plan, data, t, start_epoch)
    if dist.main:
        plan.out.mkdir(parents=True, exist_ok=True)
    for epoch in range(start_epoch, min(args.epochs, args.stop_after or args.epochs)):
        sampler.set_epoch(epoch)
        stats = train_epoch(t, loader, dist, f"epoch {epoch + 1}/{args.epochs}")
        check_finite(stats, epoch + 1)
        test_acc = evaluate(t, data.test_images, data.test_labels, dist, args.batch_size // dist.world)
        metrics.append(metrics_row(epoch + 1, stats, test_acc))
        if dist.main:
            print(format_row(metrics[-1], args.epochs), flush=True)
            save_outputs(plan.out, t.raw, t.optimizer, t.scaler, metrics, epoch + 1, t.step, record)


def train(args: argparse.Namespace, dist: Dist, device: torch.device) -> int:
    """Train as `args` says on `device` (inside the process group, if any); returns the exit code."""
    plan = plan_run(args, dist)
    data = load_data(args, dist, plan)
    t = build_trainer(args, plan, device)
    start_epoch, metrics = 0, []
    if args.resume:
        start_epoch, metrics = restore(plan.ck_path, args.spec, plan.net.graph.graph["spec_sha256"],
                                       t.raw, t.optimizer, t.scaler)
        if start_epoch >= args.epochs:
            log(dist, f"{plan.ck_path}: already trained {start_epoch} of {args.epochs} epochs; nothing to do")
            return 0
    wrap_model(t, args, dist)
    run_epochs(args, dist, plan, data, t, start_epoch, metrics)
    if args.print_weights_hash:
        print(f"rank {dist.rank} weights sha256 {weights_hash(t.raw.state_dict())}", flush=True)
    if dist.main:
        print(f"wrote {plan.ck_path}, model.pth, model.safetensors, metrics.csv, curves.png", file=sys.stderr)
    return 0
