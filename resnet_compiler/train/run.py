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

from ..errors import UsageError
from ..language.preprocessing import Preprocessing
from ..outputs import check_output_path
from ..runtime.limits import check_forward
from . import options
from .augment import make_augment
from .checkpoint import (
    CHECKPOINT,
    OUTPUT_FILES,
    RESUME_SAME,
    RunRecord,
    restore,
    run_metadata,
    save_outputs,
    weights_hash,
)
from .data import Dataset, check_channels, download_fashion_mnist, load_dataset
from .distributed import Dist, barrier, log, wrap_ddp
from .freeze import freeze, freeze_targets, norm_modules
from .loop import (
    Trainer,
    check_finite,
    evaluate,
    format_row,
    make_loader,
    metrics_row,
    train_epoch,
)

if TYPE_CHECKING:  # torch is imported where it is used
    import torch


@dataclass
class Plan:
    """The compiled network, the input it takes and the folder its run writes to."""

    net: Any  # a CompiledNetwork
    out: Path
    channels: int
    size: tuple[int, int]
    preprocessing: Preprocessing
    freeze: tuple[str, ...] = ()  # module paths --freeze covers

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
    net = compile_spec(args.spec, overrides=args.overrides)
    if net.graph.graph.get("outputs"):  # the model returns a list of feature maps
        raise UsageError(f"{args.spec}: training needs a classifier that returns logits alone;"
                         " remove outputs: (and head: none) to train, then reuse the weights")
    channels, height, width = net.input_shape
    out = Path(args.out or Path("runs") / net.name)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if out.is_dir():  # a directory, a socket or a block device in the way fails now, not later
        for name in OUTPUT_FILES:
            check_output_path(out / name)
    options.check_init_weights(args.init_weights)
    targets = freeze_targets(net)
    options.check_freeze(args.freeze, targets)
    covered = tuple(dict.fromkeys(p for name in args.freeze or () for p in targets[name]))
    plan = Plan(net, out, channels, (height, width), Preprocessing.from_spec(net.spec), covered)
    options.check_fresh_start(args, plan.ck_path)
    options.check_batch_split(args.batch_size, dist.world)
    # training keeps every activation for the backward pass: the graph's estimate is the floor
    check_forward(net.ir.graph, [(height, width)], max(1, args.batch_size // dist.world))
    return plan


def load_data(args: argparse.Namespace, dist: Dist, plan: Plan) -> Dataset:
    """The dataset, fetched first if asked (by rank 0 while the others wait), checked against the spec."""
    options.check_data(args)
    if args.download:
        if dist.main:
            download_fashion_mnist(args.data_dir)
        barrier(dist)
    data = load_dataset(args.dataset, args.data_dir, plan.channels, plan.size, seed=args.seed,
                        resize=plan.preprocessing.resize)
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


def load_init_weights(model: torch.nn.Module, path: str, net: Any) -> list[str]:
    """Copy a pretrained state_dict into `model`, fitted to the spec (finetune.fit_state_dict);
    returns the notes on what was adapted or reset."""
    import numpy as np
    import torch

    from ..runtime.finetune import fit_state_dict
    from ..runtime.weights import load_checkpoint
    own = model.state_dict()
    fresh = {k: v.detach().cpu().numpy() for k, v in own.items()}
    fitted = fit_state_dict(net.graph, load_checkpoint(path), fresh)
    with torch.no_grad():
        for k, v in own.items():
            if k in fitted.state_dict:
                v.copy_(torch.from_numpy(np.array(fitted.state_dict[k])).reshape(v.shape))
    return fitted.notes


def make_optimizer(args: argparse.Namespace, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW over the parameters that train (frozen ones are left out, so weight decay and
    momentum cannot move them)."""
    import torch
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def freeze_parts(args: argparse.Namespace, plan: Plan, model: torch.nn.Module, dist: Dist) -> list[Any]:
    """Freeze what --freeze names and log it; returns the norm layers to keep in eval mode (those
    of the frozen parts, or all of them with --norm-eval)."""
    frozen = freeze(model, plan.freeze)
    if frozen and len(frozen) == len(list(model.parameters())):
        raise UsageError("every parameter is frozen: nothing left to train")
    if args.freeze:
        total = sum(p.numel() for p in model.parameters())
        fixed = sum(model.get_parameter(n).numel() for n in frozen)
        log(dist, f"frozen: {', '.join(args.freeze)} ({len(frozen)} tensors, {fixed:,} of {total:,} "
                  f"parameters; their norm layers in eval mode)")
    eval_norms = norm_modules(model, plan.net.graph, None if args.norm_eval else plan.freeze)
    if args.norm_eval:
        log(dist, f"norm eval: {len(eval_norms)} norm layers stay in eval mode (running statistics fixed)")
    return eval_norms


def build_trainer(args: argparse.Namespace, plan: Plan, device: torch.device,
                  dist: Dist) -> tuple[Trainer, list[str]]:
    """The seeded model on `device` (pretrained weights loaded, parts frozen) with its optimizer and
    loss scaler (schedule length set later); also the notes on fitting the pretrained weights."""
    import torch
    amp = pick_amp(args.amp, device)
    channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    configure_torch(device, args.seed)
    model = plan.net.build_torch()
    notes = load_init_weights(model, args.init_weights, plan.net) if args.init_weights else []
    for note in notes:
        log(dist, f"init weights {args.init_weights}: {note}")
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    eval_norms = freeze_parts(args, plan, model, dist)
    optimizer = make_optimizer(args, model)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    augment = make_augment(args.augment, plan.size)
    normalize = plan.preprocessing.normalize_torch if plan.preprocessing.mean is not None else None
    return Trainer(model, model, optimizer, scaler, device, amp, channels_last, plan.channels, plan.size,
                   args.schedule, args.lr, total_steps=0, resize=plan.preprocessing.resize,
                   normalize=normalize, augment=augment, label_smoothing=args.label_smoothing,
                   eval_modules=eval_norms), notes


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
    opt = (f"SGD lr {args.lr:g} momentum {args.momentum:g}" if args.optimizer == "sgd"
           else f"AdamW lr {args.lr:g}")
    extras = "".join(f" | {label} {value}" for label, value, default in (
        ("warmup epochs", args.warmup_epochs, 0), ("label smoothing", args.label_smoothing, 0.0),
        ("augment", args.augment, "none")) if value != default)
    log(dist, f"world size: {dist.world} | device {t.device}{' (DDP)' if dist.world > 1 else ''} | "
              f"batch {args.batch_size} ({args.batch_size // dist.world}/rank) | {opt} "
              f"wd {args.weight_decay:g} {args.schedule}{extras} | amp {amp_name} | "
              f"channels_last {'on' if t.channels_last else 'off'} | "
              f"compile {'on' if args.compile else 'off'} | "
              f"epochs {start_epoch + 1}..{args.epochs} | out {plan.out}")


def run_epochs(args: argparse.Namespace, dist: Dist, plan: Plan, data: Dataset, t: Trainer,
               start_epoch: int, metrics: list[dict[str, float]], metadata: dict[str, Any]) -> None:
    """Train from `start_epoch` to the last epoch of this run; rank 0 reports and saves after each."""
    loader, sampler = make_loader(data.train_images, data.train_labels, dist, args.batch_size, args.seed,
                                  args.workers, pin_memory=t.device.type == "cuda")
    t.total_steps = len(loader) * args.epochs
    t.warmup_steps = len(loader) * args.warmup_epochs
    t.step = start_epoch * len(loader)
    record = RunRecord(json.dumps(plan.net.spec.model_dump(mode="json"), sort_keys=True),
                       plan.net.graph.graph["spec_sha256"], options.plain_values(args), args.schedule,
                       args.lr, t.total_steps, len(loader), f"{plan.net.name} on {args.dataset}", metadata,
                       t.warmup_steps)
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
    t, notes = build_trainer(args, plan, device, dist)
    metadata = run_metadata(plan.preprocessing.to_json(), data.classes, args.init_weights, notes,
                            args.freeze or [], args.norm_eval)
    start_epoch, metrics = 0, []
    if args.resume:
        settings = {k: getattr(args, k) for k in RESUME_SAME}
        start_epoch, metrics = restore(plan.ck_path, args.spec, plan.net.graph.graph["spec_sha256"],
                                       t.raw, t.optimizer, t.scaler, settings)
        if start_epoch >= args.epochs:
            log(dist, f"{plan.ck_path}: already trained {start_epoch} of {args.epochs} epochs; nothing to do")
            return 0
    wrap_model(t, args, dist)
    run_epochs(args, dist, plan, data, t, start_epoch, metrics, metadata)
    if args.print_weights_hash:
        print(f"rank {dist.rank} weights sha256 {weights_hash(t.raw.state_dict())}", flush=True)
    if dist.main:
        print(f"wrote {plan.ck_path}, model.pth, model.safetensors, metrics.csv, curves.png", file=sys.stderr)
    return 0
