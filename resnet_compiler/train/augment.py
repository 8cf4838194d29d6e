"""Training-time augmentation on tensors, per image, after the batch is fitted to the spec's size.

torchvision.transforms.v2 draws one set of random parameters per call, and a call on a batch
tensor shares them across the batch; so each image gets its own call. The images are already on
the training device at the spec's size and in [0, 1]; normalisation by mean/std comes after.

- `crop-flip`: the CIFAR recipe, a random crop after reflect-padding by 1/8 of the size, and a
  horizontal flip half the time;
- `random-resized-crop`: the ImageNet recipe, a crop of 8-100% of the area at 3/4-4/3 aspect
  ratio resized back to the spec's size, and a horizontal flip half the time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

AUGMENTATIONS = ("none", "crop-flip", "random-resized-crop")


def make_augment(name: str, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function from a batch (N, C, H, W) to an augmented batch, or None for `none`."""
    if name == "none":
        return None
    import torch
    from torchvision.transforms import v2
    if name == "crop-flip":
        pad = min(size) // 8  # 4 at 32x32; none below 8x8, where the crop leaves the image as is
        first = v2.RandomCrop(list(size), padding=pad or None, padding_mode="reflect")
    elif name == "random-resized-crop":
        first = v2.RandomResizedCrop(list(size), antialias=True)
    else:
        raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}")
    per_image = v2.Compose([first, v2.RandomHorizontalFlip()])

    def augment(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([per_image(img) for img in x]).clamp_(0, 1)
    return augment
