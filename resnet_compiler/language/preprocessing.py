"""One preprocessing rule for every runtime: how a picture becomes the network's input.

The spec's `input:` states it (channels, height, width, resize, optional mean/std); training,
the generated model's docstring, the ONNX file's metadata and `infer` all use this one record, so
a trained model sees the same numbers in torch and in onnxruntime. Pixels are scaled to [0, 1]
(divided by 255), converted to the input's channel count (gray is repeated to RGB; RGB becomes
gray by ITU-R 601 luma), resized to height x width, then normalised per channel.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from .spec import Spec

METADATA_KEY = "preprocessing"
RESIZE_MODES = ("bilinear", "nearest", "bicubic")
SCALE = 1 / 255
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Preprocessing:
    """The input image and the steps that make it: scale, channels, resize, normalise."""

    channels: int
    height: int
    width: int
    resize: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float = SCALE

    @classmethod
    def from_spec(cls, spec: Spec) -> Preprocessing:
        i = spec.input
        return cls(i.channels, i.height, i.width, i.resize,
                   None if i.mean is None else tuple(float(v) for v in i.mean),
                   None if i.std is None else tuple(float(v) for v in i.std))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        """Parse the metadata value, checking every field (a model file may have been edited):
        a malformed one is a UsageError naming the field, never a traceback or a division by
        zero later."""
        from .load import loads_json
        try:
            d = loads_json(text, "the preprocessing metadata")
        except ValueError as e:
            raise UsageError(str(e)) from None
        if not isinstance(d, dict):
            raise UsageError("the preprocessing metadata is not a JSON object")
        channels = _whole(d, "channels")
        height, width = _whole(d, "height"), _whole(d, "width")
        resize = d.get("resize", "bilinear")
        if resize not in RESIZE_MODES:
            raise UsageError(f"the preprocessing metadata's resize is {resize!r}; it must be one"
                             f" of {', '.join(RESIZE_MODES)}")
        mean, std = _numbers(d, "mean", channels), _numbers(d, "std", channels)
        if (mean is None) != (std is None):
            raise UsageError("the preprocessing metadata gives only one of mean and std")
        if std is not None and any(v <= 0 for v in std):
            raise UsageError(f"the preprocessing metadata's std is {list(std)}; every value "
                             "must be above 0 (it divides)")
        scale = d.get("scale", SCALE)
        if not _finite(scale) or scale <= 0:
            raise UsageError(f"the preprocessing metadata's scale is {scale!r}; it must be a "
                             "number above 0")
        return cls(channels, height, width, resize, mean, std, float(scale))

    def describe(self) -> str:
        """One line for docstrings and logs."""
        norm = "no mean/std" if self.mean is None else (
            f"mean {list(self.mean)}, std {list(self.std or ())}")
        return (f"{self.channels}x{self.height}x{self.width}, pixels / 255, "
                f"{self.resize} resize, {norm}")

    def normalize_numpy(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 in [0, 1] -> the network's input."""
        import numpy as np
        if self.mean is None:
            return np.ascontiguousarray(x, dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    def normalize_torch(self, x: Any) -> Any:
        """The same on a torch tensor (N, C, H, W) in [0, 1], on its own device."""
        if self.mean is None:
            return x
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        std = x.new_tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _whole(d: dict[str, Any], key: str) -> int:
    """A positive whole-number field of the metadata."""
    if key not in d:
        raise UsageError(f"the preprocessing metadata has no {key}")
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"the preprocessing metadata's {key} is {value!r}; it must be a whole "
                         "number of at least 1")
    return value


def _numbers(d: dict[str, Any], key: str, channels: int) -> tuple[float, ...] | None:
    """The mean or std field: None, or one finite number per channel."""
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(_finite(v) for v in value):
        raise UsageError(f"the preprocessing metadata's {key} is {value!r}; it must be a list "
                         "of finite numbers")
    if len(value) != channels:
        raise UsageError(f"the preprocessing metadata's {key} has {len(value)} values for "
                         f"{channels} channels")
    return tuple(float(v) for v in value)
