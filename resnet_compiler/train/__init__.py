"""`resnet-compile train SPEC`: train the emitted network, on one device or many under torchrun.

Defaults are the seed chapter's run (plain SGD, lr 0.05, batch 128, 10 epochs, images resized to the
spec's input, no warmup, label smoothing or augmentation) with one change: the learning rate follows
a cosine schedule per step instead of staying constant. At a constant rate, plain SGD's eval-mode
accuracy (BatchNorm running statistics) keeps moving from one epoch to the next, and the final epoch
is the one a user keeps; annealing the rate to zero makes the last epoch the settled one. Measured
on digits (batch 32, 10 epochs): constant went 96.9 -> 96.1 -> 98.1% over epochs 2-4 and ended at
97.8%; cosine ended at 98.3%. `--schedule constant` gives the chapter's exact recipe.

Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (NCCL on GPUs,
gloo on CPUs), each rank reads its share of every epoch through a DistributedSampler, `--batch-size`
stays the global batch, and only rank 0 writes files and shows progress.

Files in --out, each rewritten atomically after every epoch: checkpoint.pt (the full training state
for --resume, and what `--emit onnx --weights` takes), model.pth (the bare state_dict, for plain
`model.load_state_dict(torch.load(path, weights_only=True))`), model.safetensors (the same
tensors), metrics.csv and curves.png. Nothing needs unpickling: torch.load(weights_only=True) reads
both .pt files.

Fine-tuning: --init-weights fits a torchvision/timm/own state_dict to the spec
(resnet_compiler.runtime.finetune:
first conv adapted to the input channels, classifier reset to the class count), --freeze keeps named
parts fixed (out of the optimizer, their norms in eval mode), --norm-eval keeps every norm in eval mode.

Modules: options (the command line and the checks that name flags), distributed (torchrun ranks,
device choice, process group), loop (schedule, loader, one epoch, evaluation), freeze (frozen parts,
norms in eval mode), augment (per-image transforms), checkpoint (output files, metadata, resume),
curves (curves.png) and run (the recipe that wires them together).
"""

from __future__ import annotations

from .checkpoint import (
    CHECKPOINT,
    METRICS_COLUMNS,
    load_checkpoint,
    read_metadata,
    weights_hash,
)
from .distributed import Dist, choose_device
from .loop import lr_at
from .options import build_parser

__all__ = ["CHECKPOINT", "METRICS_COLUMNS", "Dist", "build_parser", "choose_device", "load_checkpoint",
           "lr_at", "main", "read_metadata", "weights_hash"]


def main(argv: list[str]) -> int:
    """Entry point of `resnet-compile train`; returns the exit code."""
    from . import options
    from .distributed import process_group
    from .run import deterministic_setting_kept, train
    args = options.parse(argv)
    dist = Dist.from_env()
    options.check_device(args.device)
    import torch
    device = torch.device(choose_device(args.device, dist.local_rank))
    with deterministic_setting_kept(), process_group(dist, device):
        return train(args, dist, device)
