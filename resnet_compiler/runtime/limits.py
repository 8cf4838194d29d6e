"""Size limits checked before anything is allocated: decoded image pixels, input height and
width, and the activation memory a forward pass needs, estimated from the graph.

Each limit has a default that fits an ordinary workstation and an environment variable that
raises it for a bigger machine. Past a limit the command stops with one line naming the size,
the limit and the variable; nothing has been allocated by then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from ..messages import format_bytes

# Pillow's own decompression-bomb threshold (it only warns up to twice this); a decoded image
# is held in 8 bits per channel, never as a full-size float copy.
MAX_IMAGE_PIXELS = int(os.environ.get("RESNET_COMPILER_MAX_IMAGE_PIXELS", 89_478_485))
MAX_INPUT_SIDE = int(os.environ.get("RESNET_COMPILER_MAX_INPUT_SIDE", 16_384))
MAX_ACTIVATION_BYTES = int(os.environ.get("RESNET_COMPILER_MAX_ACTIVATION_BYTES", 8 << 30))
FLOAT_BYTES = 4


def check_image_pixels(width: int, height: int, where: str) -> None:
    """Refuse a decoded image larger than MAX_IMAGE_PIXELS (its header says its size)."""
    if width < 1 or height < 1:
        raise UsageError(f"{where}: the image is {width}x{height} pixels; it has no pixels")
    if width * height > MAX_IMAGE_PIXELS:
        raise UsageError(f"{where}: the image is {width}x{height} = {width * height:,} pixels; "
                         f"the limit is {MAX_IMAGE_PIXELS:,} (RESNET_COMPILER_MAX_IMAGE_PIXELS raises it)")


def check_side(value: Any, what: str) -> int:
    """An input height or width: a whole number from 1 to MAX_INPUT_SIDE."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{what} is {value!r}; it must be a whole number of pixels")
    if not 1 <= value <= MAX_INPUT_SIDE:
        raise UsageError(f"{what} is {value}; it must be from 1 to {MAX_INPUT_SIDE} pixels "
                         "(RESNET_COMPILER_MAX_INPUT_SIDE raises the limit)")
    return value


def activation_bytes(graph_attrs: Mapping[str, Any], height: int, width: int,
                     batch: int) -> int:
    """fp32 bytes of every tensor the ops write for `batch` images at `height` x `width`: the
    graph's count at its own input size, scaled by the pixels (feature maps scale with the
    input; the head's few values are counted as if they did, which errs on the safe side)."""
    c, h0, w0 = graph_attrs["input_shape"]
    per_image = int(graph_attrs["total_acts"]) + c * h0 * w0
    scaled = -(-per_image * height * width // (h0 * w0))
    return max(scaled, c * height * width) * batch * FLOAT_BYTES


def check_activations(graph_attrs: Mapping[str, Any], height: int, width: int, batch: int,
                      what: str) -> None:
    """Refuse a forward pass whose estimated activations exceed MAX_ACTIVATION_BYTES."""
    need = activation_bytes(graph_attrs, height, width, batch)
    if need > MAX_ACTIVATION_BYTES:
        images = f"{batch} image{'s' if batch > 1 else ''}"
        raise UsageError(f"{what}: {images} of {height}x{width} need about {format_bytes(need)}"
                         f" of activations (estimated from the graph); the limit is "
                         f"{format_bytes(MAX_ACTIVATION_BYTES)} (RESNET_COMPILER_MAX_ACTIVATION_BYTES raises "
                         "it)")


def check_forward(graph_attrs: Mapping[str, Any], sizes: list[tuple[int, int]], batch: int
                  ) -> None:
    """Every (height, width) a run will feed the network: sides within MAX_INPUT_SIDE, and the
    activations of `batch` images within MAX_ACTIVATION_BYTES."""
    for h, w in sizes:
        where = f"{graph_attrs['name']} at {h}x{w}"
        check_side(h, f"{where}: the input height")
        check_side(w, f"{where}: the input width")
        check_activations(graph_attrs, h, w, batch, where)
