"""Image files to network inputs without torch, with the numbers training uses.

Decoding is the training loader's (`train/data.py` calls `read_image` too). Every mode Pillow
decodes gives what its 8-bit rendering gives, to rounding: palette, bilevel, CMYK and alpha
images are converted by Pillow (alpha dropped) to gray ("L", ITU-R 601 luma) or RGB (gray
repeated), and divided by 255; 16-bit and 32-bit integer gray (I;16, I) are read as 16-bit
(divided by 65535), float gray (F) as already in [0, 1]. Resizing repeats the arithmetic of
torch's `F.interpolate(..., align_corners=False)` (bilinear, nearest, bicubic) in numpy, so a
model served by onnxruntime sees what it was trained on, to float rounding. A large image is
resized from its decoded pixels: only the rows and columns the resize reads become floats.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from .limits import check_image_pixels

if TYPE_CHECKING:
    from PIL import Image

    from ..language.preprocessing import Preprocessing

MODES = {1: "L", 3: "RGB"}
CUBIC_A = -0.75  # torch's bicubic kernel
# modes Pillow's own conversion would clip to 8 bits, and what their full scale is
DEEP_GRAY = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0,
             "I": 65535.0, "F": 1.0}
GRAY_MODES = frozenset({"1", "L", "LA", "La"})


def image_mode(channels: int) -> str:
    """PIL's mode for an input of `channels` channels (L or RGB); UsageError for others."""
    mode = MODES.get(channels)
    if mode is None:
        raise UsageError(f"images load as 1 or 3 channels, not {channels}")
    return mode


def decode_image(path: str | os.PathLike[str], channels: int) -> tuple[np.ndarray, float]:
    """The file's pixels as (H, W, C') numbers and their full scale: 8-bit values with 255,
    16-bit gray with 65535, float gray with 1 (C' is 1 for gray that is to be repeated).
    The size is checked against the limit before the pixels are decoded."""
    mode = image_mode(channels)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency of the image paths
        raise UsageError("reading image files needs Pillow (pip install pillow)") from None
    p = Path(path)
    if not p.is_file():
        why = "no such file" if not p.exists() else "not a regular file"
        raise UsageError(f"{path}: cannot read the image ({why})")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # our own limit replaces Pillow's (checked from the header, before any decoding),
            # so every image too large is refused in the same words
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(p) as im:
                Image.MAX_IMAGE_PIXELS = pillow_limit
                check_image_pixels(im.width, im.height, str(path))
                if im.mode in DEEP_GRAY:
                    raw = np.asarray(im)
                    full = DEEP_GRAY[im.mode]
                else:  # gray stays one channel until after the resize picked its pixels
                    gray = im.mode in GRAY_MODES
                    want = "L" if gray else mode
                    raw = _pixels_u8(im if im.mode == want else im.convert(want))
                    full = 255.0
    except (OSError, ValueError, SyntaxError) as e:
        raise UsageError(f"{path}: cannot read the image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    return (raw[:, :, None] if raw.ndim == 2 else raw), full


def _pixels_u8(im: Image.Image, rows: int = 256) -> np.ndarray:
    """An 8-bit image's pixels as (H, W, bands), copied a band of rows at a time: one packed
    copy, where np.asarray (through tobytes) briefly holds two."""
    out = np.empty((im.height, im.width, len(im.getbands())), np.uint8)
    for top in range(0, im.height, rows):
        bottom = min(top + rows, im.height)
        out[top:bottom] = np.frombuffer(im.crop((0, top, im.width, bottom)).tobytes(),
                                        np.uint8).reshape(bottom - top, im.width, -1)
    return out


def _as_unit(raw: np.ndarray, full: float, channels: int) -> np.ndarray:
    """(H, W, C') pixels -> (channels, H, W) float32 in [0, 1]."""
    x = np.asarray(raw, dtype=np.float32)
    if full == 255.0:
        x = x / np.float32(255.0)  # the training loader's arithmetic, bit for bit
    else:  # deep gray: saturate as an 8-bit rendering would (a float NaN pixel is black)
        x = np.clip(np.nan_to_num(x / np.float32(full), nan=0.0), 0, 1)
    x = x.transpose(2, 0, 1)
    if x.shape[0] != channels:
        x = np.repeat(x, channels, axis=0)
    return np.ascontiguousarray(x)


def read_image(path: str | os.PathLike[str], channels: int) -> np.ndarray:
    """(channels, H, W) float32 in [0, 1] at the file's own size; UsageError if unreadable."""
    raw, full = decode_image(path, channels)
    return _as_unit(raw, full, channels)


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


Taps = tuple[np.ndarray, np.ndarray | None]  # source indices (k, n_out), weights or None


def _taps(mode: str, n_in: int, n_out: int) -> Taps:
    """Where each output row (or column) reads from, and with which weights, as torch does."""
    if mode == "nearest":
        return _nearest(n_in, n_out)[None], None
    if mode == "bilinear":
        index, weight, _ = _linear(n_in, n_out)
        return index, weight
    if mode == "bicubic":
        return _cubic(n_in, n_out)
    raise UsageError(f"unknown resize mode {mode!r} (bilinear, nearest, bicubic)")


def _apply(x: np.ndarray, rows: Taps, cols: Taps) -> np.ndarray:
    """Interpolate (..., H, W) float32 with the row and column taps (torch's summation order:
    rows outermost, h0 * (w0 a + w1 b) + h1 * (...))."""
    (hi, hw), (wi, ww) = rows, cols
    if hw is None or ww is None:
        return np.ascontiguousarray(x[..., hi[0][:, None], wi[0][None, :]])
    out = np.zeros((*x.shape[:-2], hi.shape[1], wi.shape[1]), dtype=np.float32)
    for k in range(len(hi)):
        row = x[..., hi[k], :]
        inner = ww[0] * row[..., wi[0]]
        for j in range(1, len(wi)):
            inner = inner + ww[j] * row[..., wi[j]]
        out += hw[k][:, None] * inner
    return out


def resize(x: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """Resize NCHW float32 to `size` as `torch.nn.functional.interpolate(x, size, mode=mode,
    align_corners=False)` does (no antialiasing), in float32."""
    x = np.asarray(x, dtype=np.float32)
    (h_in, w_in), (h, w) = x.shape[-2:], size
    if (h_in, w_in) == (h, w):
        _taps(mode, 1, 1)  # an unknown mode is an error at any size
        return x.copy()
    return _apply(x, _taps(mode, h_in, h), _taps(mode, w_in, w))


def _compact(taps: Taps) -> tuple[np.ndarray, Taps]:
    """The distinct source indices the taps read, and the taps renumbered over them."""
    index, weight = taps
    used, renumbered = np.unique(index, return_inverse=True)
    return used, (renumbered.reshape(index.shape), weight)


def resize_pixels(raw: np.ndarray, full: float, channels: int, size: tuple[int, int],
                  mode: str = "bilinear") -> np.ndarray:
    """`resize(read_image(...)[None], size, mode)[0]` from decoded pixels (decode_image),
    with the same numbers: only the rows and columns the taps read are turned into floats, so
    a 10000x10000 photo costs its 8-bit pixels and not a 1.2 GB float copy."""
    (h_in, w_in), (h, w) = raw.shape[:2], size
    if (h_in, w_in) == (h, w):
        _taps(mode, 1, 1)
        return _as_unit(raw, full, channels)
    (rows_used, rows), (cols_used, cols) = (_compact(_taps(mode, h_in, h)),
                                            _compact(_taps(mode, w_in, w)))
    picked = _as_unit(raw[rows_used[:, None], cols_used[None, :]], full, channels)
    return _apply(picked, rows, cols)


def load_images(paths: Sequence[str | os.PathLike[str]], pre: Preprocessing) -> np.ndarray:
    """The network's input for each file: decoded, resized to the input size (then clamped to
    [0, 1], as the training loader does), normalised."""
    size = (pre.height, pre.width)
    out = np.empty((len(paths), pre.channels, *size), dtype=np.float32)
    for i, path in enumerate(paths):
        raw, full = decode_image(path, pre.channels)
        out[i] = np.clip(resize_pixels(raw, full, pre.channels, size, pre.resize), 0, 1)
        del raw
    return pre.normalize_numpy(out)


__all__ = ["decode_image", "image_mode", "load_images", "read_image", "resize", "resize_pixels"]
