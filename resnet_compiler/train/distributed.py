"""One process or many: where this process sits in a torchrun job, which device it trains on, the
process group's set-up and tear-down, and the few collective operations the recipe needs.

With WORLD_SIZE 1 (run directly) every helper here is a no-op, so the recipe reads the same either
way. `choose_device` is the one place that turns "auto"/"cpu"/"cuda" into a torch device string.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:  # torch is imported where it is used
    import torch



@dataclass
class Dist:
    """Where this process sits in a torchrun job (world 1 when run directly)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one that writes files and shows progress."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        """Read WORLD_SIZE, RANK and LOCAL_RANK as torchrun sets them (defaults: one process)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise UsageError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers") from None
        return cls(world, rank, local)


def choose_device(name: str, local_rank: int = 0) -> str:
    """'cpu' or 'cuda:N' for a choice of 'auto' (CUDA when available), 'cpu' or 'cuda'.

    Under torchrun, `local_rank` picks this process's GPU (modulo the GPUs present). Raises
    UsageError for an unknown choice, or for 'cuda' where torch sees no CUDA device.
    """
    import torch

    from ..runtime.devices import torch_device
    if torch_device(name) == "cpu":
        return "cpu"
    return f"cuda:{local_rank % torch.cuda.device_count()}"


@contextmanager
def process_group(dist: Dist, device: torch.device) -> Iterator[None]:
    """Join the torchrun job's process group for the block (NCCL on GPUs, gloo on CPUs)."""
    if dist.world == 1:
        yield
        return
    import torch
    import torch.distributed as tdist
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        tdist.destroy_process_group()


def log(dist: Dist, msg: str) -> None:
    """A progress line on stderr, from rank 0 only."""
    if dist.main:
        print(msg, file=sys.stderr, flush=True)


def barrier(dist: Dist) -> None:
    """Wait for every rank (no-op for one process)."""
    if dist.world > 1:
        import torch.distributed as tdist
        tdist.barrier()


def sum_across_ranks(t: torch.Tensor, dist: Dist) -> None:
    """Sum `t` in place over all ranks (no-op for one process)."""
    if dist.world > 1:
        import torch.distributed as tdist
        tdist.all_reduce(t)


def share_buffers_from_rank0(model: Any, dist: Dist) -> None:
    """BN running statistics drift per rank; keep rank 0's everywhere."""
    if dist.world > 1:
        import torch.distributed as tdist
        for b in model.buffers():
            tdist.broadcast(b, 0)


def wrap_ddp(model: Any, dist: Dist, device: torch.device) -> Any:
    """`model` in DistributedDataParallel under torchrun, else `model` itself."""
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    # oneDNN's 1x1-conv weight grads come back in another stride order: a copy, not an error
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
