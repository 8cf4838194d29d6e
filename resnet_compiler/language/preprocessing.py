"""One preprocessing rule for every runtime: how a picture becomes the network's input.

The spec's `input:` states it (channels, height, width, resize, optional mean/std); training,
the generated model's docstring, the ONNX file's metadata and `infer` all use this one record, so
a trained model sees the same numbers in torch and in onnxruntime. Pixels are scaled to [0, 1]
(divided by 255), converted to the input's channel count (gray is repeated to RGB; RGB becomes
gray by ITU-R 601 luma), resized to height x width, then normalised per channel.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from .spec import Spec

METADATA_KEY = "preprocessing"
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
        """Parse the metadata value; a malformed one is a UsageError, never a traceback."""
        try:
            d = json.loads(text)
            mean, std = d.get("mean"), d.get("std")
            return cls(int(d["channels"]), int(d["height"]), int(d["width"]),
                       str(d.get("resize", "bilinear")),
                       None if mean is None else tuple(float(v) for v in mean),
                       None if std is None else tuple(float(v) for v in std),
                       float(d.get("scale", SCALE)))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise UsageError(f"unreadable preprocessing metadata ({e})") from None

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
