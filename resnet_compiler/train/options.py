"""The command line of `resnet-compile train`: the parser and every check that speaks of flags.

This is the only training module that names options such as `--device`; the modules it feeds
raise neutral messages, so they read the same when the library is called from Python.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..args import (
    Parser,
    add_spec_argument,
    nonnegative_float,
    nonnegative_int,
    positive_int,
)
from ..errors import UsageError
from ..messages import did_you_mean

# what --lr, --momentum and --weight-decay default to for each optimizer
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0},  # the chapter's
    "adamw": {"lr": 1e-3, "weight_decay": 0.05},  # a common fine-tuning choice (DeiT, ConvNeXt)
}


def build_parser() -> argparse.ArgumentParser:
    """The `resnet-compile train` parser (its errors are UsageErrors, exit code 2)."""
    p = Parser(prog="resnet-compile train", description=(
        "Train the network of SPEC (the chapter's defaults: SGD, lr 0.05, batch 128, 10 epochs, "
        "images resized to the spec's input). Under torchrun it runs DistributedDataParallel."))
    add_spec_argument(p)
    _add_data_options(p)
    _add_optimisation_options(p)
    _add_finetune_options(p)
    _add_run_options(p)
    return p


def _add_data_options(p: argparse.ArgumentParser) -> None:
    """--dataset, --data-dir, --download, --workers, --augment."""
    from .augment import AUGMENTATIONS
    from .data import DATASETS
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=DATASETS, default="fashion-mnist",
                   help="fashion-mnist: IDX files in --data-dir; digits: scikit-learn's 8x8 digits "
                        "(offline, seeded 80/20 split); folder: one subfolder per class in --data-dir "
                        "(train/ and test/ subfolders, or a seeded 80/20 split)")
    d.add_argument("--data-dir", help="folder with the dataset files")
    d.add_argument("--download", action="store_true", help="fetch missing Fashion-MNIST files")
    d.add_argument("--workers", type=nonnegative_int, default=0,
                   help="DataLoader worker processes (default 0)")
    d.add_argument("--augment", choices=AUGMENTATIONS, default="none",
                   help="per-image training augmentation at the spec's size: none (default), crop-flip "
                        "(reflect-pad by 1/8, random crop, horizontal flip) or random-resized-crop "
                        "(8-100%% of the area, horizontal flip)")


def _add_optimisation_options(p: argparse.ArgumentParser) -> None:
    """--epochs, --batch-size, --optimizer, --lr, --momentum, --weight-decay, --schedule,
    --warmup-epochs, --label-smoothing, --seed."""
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=positive_int, default=10, help="epochs (default 10)")
    o.add_argument("--batch-size", type=positive_int, default=128,
                   help="global batch size, split across ranks under torchrun (default 128)")
    o.add_argument("--optimizer", choices=tuple(OPTIMIZER_DEFAULTS), default="sgd",
                   help="sgd (default, the chapter's) or adamw (decoupled weight decay)")
    o.add_argument("--lr", type=nonnegative_float,
                   help="peak learning rate (default: 0.05 for sgd, 0.001 for adamw)")
    o.add_argument("--momentum", type=nonnegative_float,
                   help="SGD momentum (default 0, as the chapter; sgd only)")
    o.add_argument("--weight-decay", type=nonnegative_float,
                   help="weight decay (default: 0 for sgd, L2; 0.05 for adamw, decoupled)")
    o.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine",
                   help="learning rate per step: cosine to zero (default), step (x0.1 at 50%% and 75%%) "
                        "or constant (the chapter's)")
    o.add_argument("--warmup-epochs", type=nonnegative_int, default=0,
                   help="rise linearly to the peak rate over this many epochs, then follow --schedule "
                        "(default 0)")
    o.add_argument("--label-smoothing", type=_smoothing, default=0.0,
                   help="cross-entropy label smoothing in [0, 1) (default 0)")
    o.add_argument("--seed", type=int, default=0,
                   help="seed for initialisation, data order and the digits/folder split (default 0)")


def _add_finetune_options(p: argparse.ArgumentParser) -> None:
    """--init-weights, --freeze, --norm-eval."""
    f = p.add_argument_group("fine-tuning")
    f.add_argument("--init-weights", metavar="FILE",
                   help="start from these weights (.pt/.pth state_dict or training checkpoint, or "
                        ".safetensors; torchvision and timm keys): a classifier of another class "
                        "count is reset, a first conv of another channel count adapted")
    f.add_argument("--freeze", type=_names, metavar="NAMES",
                   help="comma list of parts to keep fixed: stem (every module before the first "
                        "stage), stage names (layer1) or top-level modules (conv1, fc); their norm "
                        "layers stay in eval mode")
    f.add_argument("--norm-eval", action="store_true",
                   help="keep every norm layer in eval mode while training (running statistics fixed)")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name (give a comma list like stem,layer1)")
    return names


def _smoothing(text: str) -> float:
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be below 1")
    return value


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """--out, --resume, --overwrite, --stop-after, --device, --amp, --channels-last, --compile, ..."""
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


def parse(argv: list[str]) -> argparse.Namespace:
    """Parsed options with the optimizer's defaults filled in (a UsageError for bad ones)."""
    args = build_parser().parse_args(argv)
    defaults = OPTIMIZER_DEFAULTS[args.optimizer]
    if args.optimizer != "sgd" and args.momentum is not None:
        raise UsageError(f"--momentum applies to --optimizer sgd, not {args.optimizer} (it uses betas "
                         f"0.9, 0.999)")
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.warmup_epochs >= args.epochs:
        raise UsageError(f"--warmup-epochs {args.warmup_epochs} must be less than --epochs {args.epochs}")
    if args.freeze is not None:
        args.freeze = list(dict.fromkeys(args.freeze))  # once each, in the order given
    return args


def check_init_weights(path: str | None) -> None:
    """--init-weights must name a file; checked before any data is loaded."""
    if path is not None and not Path(path).is_file():
        raise UsageError(f"--init-weights {path}: no such file")


def check_freeze(names: list[str] | None, targets: dict[str, Any]) -> None:
    """Every --freeze name must be a part of the network (`targets`: freeze.freeze_targets)."""
    for name in names or ():
        if name not in targets:
            raise UsageError(f"--freeze {name}: no such part of the network{did_you_mean(name, targets)} "
                             f"(parts: {', '.join(targets)})")


def check_device(choice: str) -> None:
    """Refuse `--device cuda` where torch sees no CUDA device."""
    import torch
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")


def check_fresh_start(args: argparse.Namespace, ck_path: Path) -> None:
    """Refuse to train over an existing run unless --resume or --overwrite says what to do."""
    if ck_path.exists() and not (args.resume or args.overwrite):
        raise UsageError(f"{ck_path} exists: add --resume to continue that run, --overwrite to start "
                         f"afresh, or choose another --out")


def check_batch_split(batch_size: int, world: int) -> None:
    """The global batch must divide evenly across the torchrun ranks."""
    if batch_size % world:
        raise UsageError(f"--batch-size {batch_size} does not split evenly across {world} ranks")


def check_data(args: argparse.Namespace) -> None:
    """What --dataset, --data-dir and --download need of each other, checked before any loading."""
    if args.download and not (args.dataset == "fashion-mnist" and args.data_dir):
        raise UsageError("--download fetches Fashion-MNIST: it needs --dataset fashion-mnist --data-dir DIR")
    if args.dataset == "folder" and args.data_dir is None:
        raise UsageError("--dataset folder needs --data-dir DIR (one subfolder per class)")
    if args.dataset == "fashion-mnist" and not args.download:
        _check_fashion_mnist_folder(args.data_dir)


def _check_fashion_mnist_folder(data_dir: str | None) -> None:
    """--data-dir must hold the four IDX files when --download is not given."""
    from .data import missing_fashion_mnist_files
    if data_dir is None:
        raise UsageError("--dataset fashion-mnist needs --data-dir DIR (the folder with the IDX files; "
                         "add --download to fetch them)")
    d = Path(data_dir)
    if not d.is_dir():
        raise UsageError(f"{d}: data folder not found (add --download to fetch Fashion-MNIST)")
    missing = missing_fashion_mnist_files(d)
    if missing:
        raise UsageError(f"{d}: missing {', '.join(missing)} (raw or .gz); add --download to fetch them")


def plain_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options as plain values (str, int, float, bool, None, lists of str), as a checkpoint
    records them."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in vars(args).items()
            if isinstance(v, (str, int, float, bool)) or v is None
            or (isinstance(v, list) and all(isinstance(e, str) for e in v))}
