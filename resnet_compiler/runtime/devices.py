"""Which torch device a run uses: one rule for verify, train and bench."""

from __future__ import annotations

from ..errors import UsageError

TORCH_DEVICES = ("auto", "cpu", "cuda")


def torch_device(name: str) -> str:
    """'cpu' or 'cuda' for a requested device: 'auto' takes CUDA where torch sees a GPU; an
    explicit 'cuda' without one is refused."""
    import torch

    if name not in TORCH_DEVICES:
        raise UsageError(f"device {name!r}: choose one of {', '.join(TORCH_DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda: no CUDA device is available on this machine")
    return name
