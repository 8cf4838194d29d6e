"""Dataset loaders: the IDX parser on generated files (gzip and raw, and every kind of bad file),
digits, image folders and the per-batch resize, through the API and the real CLI."""

from __future__ import annotations

import gzip
import subprocess
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_compiler.errors import UsageError
from resnet_compiler.train import data

TINY_SPEC = """\
name: tiny
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem:
  - {op: conv, name: conv1, channels: 4, kernel: 3}
  - {op: bn, name: bn1}
  - {op: relu, name: relu}
stages:
  - {block: basic, depth: 1, channels: 4}
head: {pool: avg}
"""


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode an unsigned-byte array in the IDX format."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_fashion(folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = False,
                  size: int = 28) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        payload = idx_bytes(arr)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path: Path, gz: bool) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    payload = idx_bytes(arr)
    p = tmp_path / "x.idx"
    p.write_bytes(gzip.compress(payload) if gz else payload)
    np.testing.assert_array_equal(data.read_idx(p), arr)


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_idx(tmp_path: Path, gz: bool) -> None:
    arrays = write_fashion(tmp_path, gz=gz)
    ds = data.load_fashion_mnist(tmp_path)
    assert ds.train_images.shape == (12, 1, 28, 28) and ds.test_images.shape == (6, 1, 28, 28)
    assert ds.train_images.dtype == torch.float32 and float(ds.train_images.max()) <= 1.0
    np.testing.assert_allclose(ds.train_images[:, 0].numpy() * 255,
                               arrays["train-images-idx3-ubyte"], atol=1e-3)
    assert ds.test_labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert ds.num_classes == 10


def _corrupt(folder: Path, kind: str) -> tuple[str, str]:
    """Break one file of a valid set; returns (file name, expected words in the message)."""
    write_fashion(folder)
    name = "train-images-idx3-ubyte"
    p = folder / name
    if kind == "missing":
        p.unlink()
        return name, "missing"
    if kind == "magic":
        p.write_bytes(b"\x12\x34\x56\x78" + p.read_bytes()[4:])
        return name, "magic"
    if kind == "truncated":
        p.write_bytes(p.read_bytes()[:-100])
        return name, "truncated"
    if kind == "truncated-gz":
        (folder / (name + ".gz")).write_bytes(gzip.compress(p.read_bytes())[:-30])
        p.unlink()
        return name, "truncated"
    if kind == "count":
        lab = folder / "train-labels-idx1-ubyte"
        lab.write_bytes(idx_bytes(np.zeros(11, dtype=np.uint8)))
        return name, "labels"
    raise AssertionError(kind)


BAD = ["missing", "magic", "truncated", "truncated-gz", "count"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_idx_files_api(tmp_path: Path, kind: str) -> None:
    name, words = _corrupt(tmp_path, kind)
    with pytest.raises(UsageError) as e:
        data.load_fashion_mnist(tmp_path)
    msg = str(e.value)
    assert name in msg and words in msg and "\n" not in msg


@pytest.mark.parametrize("kind", BAD)
def test_bad_idx_files_cli_exit_2(tmp_path: Path, kind: str) -> None:
    name, words = _corrupt(tmp_path / "d", kind)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    r = subprocess.run(["resnet-compile", "train", str(spec), "--dataset", "fashion-mnist", "--data-dir",
                        str(tmp_path / "d"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_missing_data_dir_and_download_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="needs a data folder"):
        data.load_fashion_mnist(None)
    with pytest.raises(UsageError, match="not found"):
        data.load_fashion_mnist(tmp_path / "nope")

    def offline(*a: object, **k: object) -> None:
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(UsageError, match="cannot download .*no network"):
        data.load_fashion_mnist(tmp_path / "dl", download=True)


def test_download_skips_present_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fashion(tmp_path, gz=True)
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: pytest.fail("fetched"))
    assert data.load_fashion_mnist(tmp_path, download=True).train_images.shape[0] == 12


def test_digits_split_is_fixed_and_scaled() -> None:
    a, b = data.load_digits(), data.load_digits()
    assert a.train_images.shape == (1437, 1, 8, 8) and a.test_images.shape == (360, 1, 8, 8)
    assert torch.equal(a.test_labels, b.test_labels) and torch.equal(a.train_images, b.train_images)
    assert 0.0 <= float(a.train_images.min()) and float(a.train_images.max()) == 1.0
    counts = torch.bincount(a.test_labels, minlength=10)
    assert int(counts.min()) >= 35  # stratified: every class ~20% of its examples


def test_digits_split_follows_the_seed() -> None:
    """The same seed gives the same split, another seed another one, through load_dataset too
    (which `train --seed` calls), and every seed keeps the 80/20 stratified sizes."""
    def split(seed: int) -> data.Dataset:
        return data.load_dataset("digits", None, 1, (8, 8), seed=seed)
    a, again, other = split(0), split(0), split(1)
    assert torch.equal(a.test_images, again.test_images) and torch.equal(a.train_labels, again.train_labels)
    assert not torch.equal(a.test_images, other.test_images)
    assert other.train_images.shape == a.train_images.shape and other.test_images.shape == a.test_images.shape
    assert torch.equal(torch.bincount(a.test_labels), torch.bincount(other.test_labels))  # stratified
    assert torch.equal(data.load_digits(seed=1).test_images, other.test_images)


def test_library_messages_name_no_flags(tmp_path: Path) -> None:
    """data.py is called from Python too: its errors speak of folders and datasets, not of `--flags`
    (the train command's options module adds those before it calls in)."""
    (tmp_path / "empty").mkdir()
    calls = [
        lambda: data.load_fashion_mnist(None),
        lambda: data.load_fashion_mnist(tmp_path / "nope"),
        lambda: data.load_fashion_mnist(tmp_path / "empty"),
        lambda: data.load_folder(None, 1, (8, 8)),
        lambda: data.load_dataset("digits", None, 1, (8, 8), download=True),
        lambda: data.load_dataset("nope", None, 1, (8, 8)),
        lambda: data._read_images([], 2, (8, 8)),
    ]
    for call in calls:
        with pytest.raises(UsageError) as e:
            call()
        assert "--" not in str(e.value), str(e.value)
    assert data.missing_fashion_mnist_files(tmp_path / "empty") == list(data.FASHION_MNIST_FILES.values())


def _write_pngs(root: Path, classes: int = 2, per_class: int = 5, size: tuple[int, int] = (12, 10)) -> None:
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / f"class{c}" / f"{i}.png")


def test_folder_seeded_split(tmp_path: Path) -> None:
    _write_pngs(tmp_path)
    ds = data.load_folder(tmp_path, channels=1, size=(16, 16), seed=0)
    assert ds.classes == ("class0", "class1")
    assert ds.train_images.shape == (8, 1, 16, 16) and ds.test_images.shape == (2, 1, 16, 16)
    assert sorted(ds.test_labels.tolist()) == [0, 1]
    again = data.load_folder(tmp_path, channels=1, size=(16, 16), seed=0)
    assert torch.equal(ds.test_images, again.test_images)


def test_folder_train_test_layout(tmp_path: Path) -> None:
    _write_pngs(tmp_path / "train", per_class=3)
    _write_pngs(tmp_path / "test", per_class=2)
    ds = data.load_folder(tmp_path, channels=3, size=(12, 10))
    assert ds.train_images.shape == (6, 3, 12, 10) and ds.test_images.shape == (4, 3, 12, 10)
    with pytest.raises(UsageError, match="no class subfolders"):
        data.load_folder(tmp_path / "train" / "class0", channels=3, size=(8, 8))


def test_fit_batch_resizes_and_converts_channels() -> None:
    x = torch.rand(2, 1, 8, 8)
    y = data.fit_batch(x, 3, (96, 96))
    assert y.shape == (2, 3, 96, 96) and torch.equal(y[:, 0], y[:, 2])
    z = data.fit_batch(torch.ones(2, 3, 5, 5), 1, (5, 5))
    assert z.shape == (2, 1, 5, 5) and torch.allclose(z, torch.ones_like(z))
    assert data.fit_batch(x, 1, (8, 8)) is x
    with pytest.raises(UsageError, match="channels"):
        data.check_channels(2, 3)


def test_train_on_idx_files_resized_to_the_spec(tmp_path: Path) -> None:
    """28x28 IDX images reach an 8x8 spec through the per-batch resize."""
    from resnet_compiler.cli import main as cli_main
    write_fashion(tmp_path / "d", n_train=40, n_test=10, gz=True)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY_SPEC)
    out = tmp_path / "o"
    assert cli_main(["train", str(spec), "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "d"),
                     "--epochs", "1", "--batch-size", "16", "--out", str(out)]) == 0
    assert (out / "checkpoint.pt").is_file() and (out / "metrics.csv").is_file()
