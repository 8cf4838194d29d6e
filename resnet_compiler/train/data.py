"""Datasets for `resnet-compile train`: Fashion-MNIST (IDX files), scikit-learn's digits, image folders.

Every loader returns the images at their native resolution as float tensors in [0, 1] (N, C, H, W);
`fit_batch` resizes and converts channels per batch, on the training device, so a 60,000-image
set resized to 96x96 never has to sit in memory as 2 GB of floats. Bad input files raise UsageError
with one line naming the file and the problem. Messages here name no command-line flags: the train
command's options module checks those before it calls in.
"""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:  # torch is imported where it is used
    import torch

DATASETS = ("fashion-mnist", "digits", "folder")

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# IDX type codes (third magic byte) -> numpy big-endian dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Dataset:
    """Train and test splits as tensors: images float32 (N, C, H, W) in [0, 1], labels int64."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- IDX

def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (raw or gzip, detected by content) into a numpy array.

    Raises UsageError for a missing, unreadable, malformed or truncated file.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{p}: file not found") from None
    except OSError as e:
        raise UsageError(f"{p}: cannot read: {e.strerror or e}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise UsageError(f"{p}: corrupt or truncated gzip data ({e})") from None
    if len(raw) < 4:
        raise UsageError(f"{p}: not an IDX file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise UsageError(f"{p}: bad magic number 0x{raw[:4].hex()} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UsageError(f"{p}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = len(raw) - header
    if body < expected:
        raise UsageError(f"{p}: truncated: dimensions {'x'.join(map(str, dims))} need {expected} "
                         f"bytes of data, the file has {body}")
    if body > expected:
        raise UsageError(f"{p}: {body - expected} unexpected bytes after the data "
                         f"({'x'.join(map(str, dims))})")
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(dims)), offset=header).reshape(dims)


def _find_idx(folder: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def download_fashion_mnist(folder: str | os.PathLike[str], mirror: str = FASHION_MNIST_MIRROR,
                           timeout: float = 30.0) -> None:
    """Fetch the four gzip IDX files that are not already in `folder`."""
    from ..outputs import write_atomic
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    for base in FASHION_MNIST_FILES.values():
        if _find_idx(d, base):
            continue
        url = mirror + base + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - fixed https/http URL
                payload = r.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UsageError(f"cannot download {url}: {reason}; without a network, copy the Fashion-MNIST "
                             f"IDX files into {d}") from None
        write_atomic(d / (base + ".gz"), payload)


def missing_fashion_mnist_files(folder: str | os.PathLike[str]) -> list[str]:
    """The IDX files (base names) that `folder` lacks in both raw and .gz form."""
    d = Path(folder)
    return [base for base in FASHION_MNIST_FILES.values() if _find_idx(d, base) is None]


def load_fashion_mnist(folder: str | os.PathLike[str] | None, download: bool = False) -> Dataset:
    """Fashion-MNIST (or any MNIST-format set) from the standard IDX files in `folder`."""
    import torch
    if folder is None:
        raise UsageError("fashion-mnist needs a data folder (the folder with the IDX files)")
    d = Path(folder)
    if download:
        download_fashion_mnist(d)
    if not d.is_dir():
        raise UsageError(f"{d}: data folder not found (Fashion-MNIST can be downloaded into it)")
    missing = missing_fashion_mnist_files(d)
    if missing:
        raise UsageError(f"{d}: missing {', '.join(missing)} (raw or .gz; Fashion-MNIST can be "
                         f"downloaded into the folder)")
    paths = {key: _find_idx(d, base) for key, base in FASHION_MNIST_FILES.items()}
    arrays = {key: read_idx(p) for key, p in paths.items()}  # type: ignore[arg-type]
    splits = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        ipath, lpath = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3:
            raise UsageError(f"{ipath}: expected 3 dimensions (count, rows, cols), got {images.ndim}")
        if labels.ndim != 1:
            raise UsageError(f"{lpath}: expected 1 dimension (count), got {labels.ndim}")
        if len(images) != len(labels):
            raise UsageError(f"{ipath}: {len(images)} images but {lpath.name} has {len(labels)} labels")
        if len(labels) == 0:
            raise UsageError(f"{lpath}: no examples")
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        splits.append((x, torch.from_numpy(labels.astype(np.int64))))
    n_classes = int(max(splits[0][1].max(), splits[1][1].max())) + 1
    classes = FASHION_MNIST_CLASSES if n_classes == 10 else tuple(str(i) for i in range(n_classes))
    return Dataset("fashion-mnist", *splits[0], *splits[1], classes)


# -------------------------------------------------------------------------------------------- digits

def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, real and offline), split 80/20 stratified
    by `seed` (the same seed, the same split), pixels scaled from 0..16 to [0, 1]."""
    import torch
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split
    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    y = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return Dataset("digits", torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte),
                   torch.from_numpy(yte), tuple(str(i) for i in range(10)))


# -------------------------------------------------------------------------------------------- folder

def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_images(files: list[Path], channels: int, size: tuple[int, int],
                 resize: str = "bilinear") -> torch.Tensor:
    """Decode with PIL, convert to the wanted channel count and resize to `size` (`resize` mode)."""
    import torch

    from ..runtime.images import image_mode, read_image  # the decoding `infer` uses too
    image_mode(channels)
    out = torch.empty(len(files), channels, *size)
    for i, f in enumerate(files):
        t = torch.from_numpy(read_image(f, channels))[None]
        out[i] = resize_batch(t, size, resize)[0].clamp_(0, 1)
    return out


def load_folder(folder: str | os.PathLike[str] | None, channels: int, size: tuple[int, int],
                seed: int = 0, test_fraction: float = 0.2, resize: str = "bilinear") -> Dataset:
    """Images in one subfolder per class. With `train/` and `test/` subfolders those are the splits;
    otherwise a seeded stratified split. Images are decoded once, at the spec's size."""
    import torch
    if folder is None:
        raise UsageError("an image folder dataset needs a data folder (one subfolder per class)")
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{root}: data folder not found")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes = [p.name for p in _class_dirs(root / "train")]
        if not classes:
            raise UsageError(f"{root / 'train'}: no class subfolders")
        test_classes = [p.name for p in _class_dirs(root / "test")]
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise UsageError(f"{root / 'test'}: classes not in train/: {', '.join(unknown)}")
        splits = []
        for split in ("train", "test"):
            files, labels = [], []
            for i, c in enumerate(classes):
                found = _image_files(root / split / c) if (root / split / c).is_dir() else []
                files += found
                labels += [i] * len(found)
            if not files:
                raise UsageError(f"{root / split}: no images ({', '.join(IMAGE_SUFFIXES)})")
            images = _read_images(files, channels, size, resize)
            splits.append((images, torch.tensor(labels, dtype=torch.int64)))
        return Dataset("folder", *splits[0], *splits[1], tuple(classes))
    class_dirs = _class_dirs(root)
    if not class_dirs:
        raise UsageError(f"{root}: no class subfolders (expected DIR/CLASS/*.png, or DIR/train and DIR/test)")
    files, labels = [], []
    for i, c in enumerate(class_dirs):
        found = _image_files(c)
        files += found
        labels += [i] * len(found)
    if len(files) < 2:
        raise UsageError(f"{root}: fewer than 2 images ({', '.join(IMAGE_SUFFIXES)})")
    y = np.array(labels)
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for i in range(len(class_dirs)):  # stratified: the same fraction of every class, at least one
        idx = np.flatnonzero(y == i)
        rng.shuffle(idx)
        k = min(len(idx) - 1, max(1, round(len(idx) * test_fraction))) if len(idx) > 1 else 0
        test_idx += idx[:k].tolist()
    test_set = set(test_idx)
    train_idx = [i for i in range(len(files)) if i not in test_set]
    test_idx.sort()
    if not test_idx:
        raise UsageError(f"{root}: too few images to hold out a test split")
    x = _read_images(files, channels, size, resize)
    yt = torch.from_numpy(y.astype(np.int64))
    return Dataset("folder", x[train_idx], yt[train_idx], x[test_idx], yt[test_idx],
                   tuple(c.name for c in class_dirs))


# ------------------------------------------------------------------------------------------- dispatch

def load_dataset(name: str, data_dir: str | None, channels: int, size: tuple[int, int],
                 download: bool = False, seed: int = 0, resize: str = "bilinear") -> Dataset:
    """The named dataset; `channels`, `size` and `resize` are the spec's input (used by `folder`
    only, the others are converted per batch by `fit_batch`)."""
    if name == "fashion-mnist":
        return load_fashion_mnist(data_dir, download=download)
    if download:
        raise UsageError(f"downloading applies to fashion-mnist, not {name}")
    if name == "digits":
        return load_digits(seed=seed)
    if name == "folder":
        return load_folder(data_dir, channels, size, seed=seed, resize=resize)
    raise UsageError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def check_channels(have: int, want: int) -> None:
    """Channel conversions `fit_batch` can do: equal, gray->RGB (repeat), RGB->gray (luma)."""
    if have != want and (have, want) not in ((1, 3), (3, 1)):
        raise UsageError(f"the data has {have} channels and the spec's input {want}: only 1<->3 "
                         f"channel conversion is supported")


def resize_batch(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """A batch in [0, 1] resized to `size` by the spec's `resize` mode (torch's bilinear, nearest or
    bicubic, align_corners False, no antialiasing); bicubic overshoot is clamped back into [0, 1]."""
    import torch.nn.functional as F
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    corners = None if mode == "nearest" else False
    x = F.interpolate(x, size=tuple(size), mode=mode, align_corners=corners)
    return x.clamp_(0, 1) if mode == "bicubic" else x


def fit_batch(x: torch.Tensor, channels: int, size: tuple[int, int],
              resize: str = "bilinear") -> torch.Tensor:
    """Resize a batch (the spec's `resize` mode) and convert its channel count to the spec's input."""
    c = x.shape[1]
    if c == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif c == 3 and channels == 1:
        w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x * w).sum(1, keepdim=True)
    return resize_batch(x, size, resize)
