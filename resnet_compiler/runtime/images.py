"""Image files to network inputs without torch, with the numbers training uses.

Decoding is the training loader's (`train/data.py` calls `read_image` too): PIL converts to gray ("L",
ITU-R 601 luma) or RGB (gray repeated), pixels are divided by 255. Resizing repeats the
arithmetic of torch's `F.interpolate(..., align_corners=False)` (bilinear, nearest, bicubic) in
numpy, so a model served by onnxruntime sees what it was trained on, to float rounding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    from ..language.preprocessing import Preprocessing

MODES = {1: "L", 3: "RGB"}
CUBIC_A = -0.75  # torch's bicubic kernel


def image_mode(channels: int) -> str:
    """PIL's mode for an input of `channels` channels (L or RGB); UsageError for others."""
    mode = MODES.get(channels)
    if mode is None:
        raise UsageError(f"images load as 1 or 3 channels, not {channels}")
    return mode


def read_image(path: str | os.PathLike[str], channels: int) -> np.ndarray:
    """(channels, H, W) float32 in [0, 1] at the file's own size; UsageError if unreadable."""
    mode = image_mode(channels)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency of the image paths
        raise UsageError("reading image files needs Pillow (pip install pillow)") from None
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UsageError(f"{path}: cannot read the image ({e})") from None
    return np.ascontiguousarray(arr.reshape(arr.shape[0], arr.shape[1], -1).transpose(2, 0, 1))


def _linear(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (2 taps) and weights for one axis, as torch's linear upsampling."""
    scale = np.float32(n_in / n_out)
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5))
                     - np.float32(0.5), np.float32(0))
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0.astype(np.float32)
    return np.stack([i0, i1]), np.stack([np.float32(1) - w1, w1]), src


def _cubic(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Four taps per output (clamped at the border) and Keys' weights with a = -0.75."""
    scale = np.float32(n_in / n_out)
    src = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    i = np.floor(src).astype(np.int64)
    t = src - i.astype(np.float32)
    a = np.float32(CUBIC_A)

    def near(x: np.ndarray) -> np.ndarray:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)]).astype(np.float32)
    taps = np.clip(np.stack([i - 1, i, i + 1, i + 2]), 0, n_in - 1)
    return taps, weights


def _nearest(n_in: int, n_out: int) -> np.ndarray:
    scale = np.float32(n_in / n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64),
                      n_in - 1)


def resize(x: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Resize NCHW float32 to `size` as `torch.nn.functional.interpolate(x, size, mode=mode,
    align_corners=False)` does (no antialiasing), in float32."""
    x = np.asarray(x, dtype=np.float32)
    (h_in, w_in), (h, w) = x.shape[-2:], size
    if (h_in, w_in) == (h, w):
        return x.copy()
    if mode == "nearest":
        return np.ascontiguousarray(x[..., _nearest(h_in, h)[:, None], _nearest(w_in, w)[None, :]])
    if mode == "bilinear":
        (hi, hw, _), (wi, ww, _) = _linear(h_in, h), _linear(w_in, w)
        rows = [x[..., hi[k], :] for k in range(2)]  # torch: h0 * (w0 a + w1 b) + h1 * (...)
        out = np.zeros((*x.shape[:-2], h, w), dtype=np.float32)
        for k in range(2):
            inner = ww[0] * rows[k][..., wi[0]] + ww[1] * rows[k][..., wi[1]]
            out += hw[k][:, None] * inner
        return out
    if mode == "bicubic":
        (hi, hw), (wi, ww) = _cubic(h_in, h), _cubic(w_in, w)
        out = np.zeros((*x.shape[:-2], h, w), dtype=np.float32)
        for k in range(4):
            row = x[..., hi[k], :]
            inner = sum(ww[j] * row[..., wi[j]] for j in range(4))
            out += hw[k][:, None] * inner
        return out
    raise UsageError(f"unknown resize mode {mode!r} (bilinear, nearest, bicubic)")


def load_images(paths: Sequence[str | os.PathLike[str]], pre: Preprocessing) -> np.ndarray:
    """The network's input for each file: decoded, resized to the input size (then clamped to
    [0, 1], as the training loader does), normalised."""
    size = (pre.height, pre.width)
    out = np.empty((len(paths), pre.channels, *size), dtype=np.float32)
    for i, path in enumerate(paths):
        image = resize(read_image(path, pre.channels)[None], size, pre.resize)
        out[i] = np.clip(image[0], 0, 1)
    return pre.normalize_numpy(out)


__all__ = ["image_mode", "load_images", "read_image", "resize"]
