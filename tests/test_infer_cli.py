"""`resnet-compile infer` on real image files against the torch model fed by the training loader,
and the numpy resize against torch's F.interpolate."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from support import realistic_bn, run_cli

import resnet_compiler as rc
from resnet_compiler.language.preprocessing import Preprocessing
from resnet_compiler.runtime.images import resize
from resnet_compiler.runtime.infer import classify_files, open_session, run_outputs
from resnet_compiler.train.data import load_digits, load_folder

NAMES = [f"digit-{i}" for i in range(10)]


def _spec(channels: int) -> dict:
    return {
        "name": "tiny_digits",
        "input": {"channels": channels, "height": 16, "width": 12,
                  "mean": [0.2] * channels, "std": [0.3] * channels},
        "num_classes": 10,
        "stem": [{"op": "conv", "name": "conv1", "channels": 8, "kernel": 3},
                 {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "relu"}],
        "stages": [{"block": "basic", "depth": 1, "channels": 8},
                   {"block": "basic", "depth": 1, "channels": 16, "stride": 2}],
    }


def _model(channels: int, tmp_path: Path) -> tuple[torch.nn.Module, Path, Preprocessing]:
    net = rc.compile(_spec(channels))
    model = realistic_bn(net.build_torch()).eval()
    path = tmp_path / f"m{channels}.onnx"
    net.to_onnx(path, weights=model.state_dict(), class_names=NAMES)
    return model, path, Preprocessing.from_spec(net.spec)


def _digit_files(root: Path, count: int) -> list[Path]:
    """Test-split digits as 8x8 gray PNGs in root/{train,test}/<label>/, plus RGB files of
    other sizes, in the order load_folder reads them."""
    data = load_digits(seed=0)
    rng = np.random.default_rng(1)
    files = []
    for i in range(count):
        label = int(data.test_labels[i])
        folder = root / "test" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        if i % 3 == 2:  # colour, another size: luma (or kept RGB) and a real resize
            pixels = (rng.random((21, 9, 3)) * 255).astype(np.uint8)
        else:
            pixels = np.round(data.test_images[i, 0].numpy() * 255).astype(np.uint8)
        path = folder / f"{i:03d}.png"
        Image.fromarray(pixels).save(path)
        files.append(path)
        (root / "train" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / "train" / str(label) / path.name)
    return sorted(files, key=lambda p: (p.parent.name, p.name))


@pytest.mark.parametrize("channels", [1, 3])
def test_infer_cli_agrees_with_torch_on_the_training_loaders_images(channels, tmp_path):
    model, path, pre = _model(channels, tmp_path)
    files = _digit_files(tmp_path / "data", 12)
    data = load_folder(tmp_path / "data", channels, (pre.height, pre.width))  # data.py's path
    with torch.no_grad():
        want = torch.softmax(model(pre.normalize_torch(data.test_images)), 1).numpy()
    r = run_cli("infer", path, *files, "--top-k", "3", "--device", "cpu")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(files)
    for line, file, p in zip(lines, files, want, strict=True):
        name, ranked = line.split(": ", 1)
        assert name == str(file)
        got = [(m[1], float(m[2])) for m in re.finditer(r"(digit-\d) ([0-9.]+)", ranked)]
        top = np.argsort(-p, kind="stable")[:3]
        assert [NAMES[i] for i in top] == [g[0] for g in got]
        assert np.allclose([p[i] for i in top], [g[1] for g in got], atol=1e-4)
    results = classify_files(open_session(path, "cpu"), files, top_k=10)
    order = [[NAMES.index(label) for label in res.labels] for res in results]
    assert np.abs(np.take_along_axis(want, np.array(order), 1)
                  - np.array([res.probs for res in results])).max() < 1e-5


def test_bad_image_and_model_without_metadata_exit_2(tmp_path):
    _, path, _ = _model(1, tmp_path)
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    features = tmp_path / "features.onnx"
    spec = _spec(1) | {"head": "none", "outputs": ["layer2"]}
    rc.compile(spec).to_onnx(features)
    cases = [((path, good, tmp_path / "broken.png"), "broken.png: cannot read the image"),
             ((path, tmp_path / "missing.png"), "missing.png: cannot read the image"),
             ((tmp_path / "bare.onnx", good), "no preprocessing metadata"),
             ((features, good), "no logits output"),
             ((path, good, "--top-k", "0"), "--top-k")]
    for args, message in cases:
        r = run_cli("infer", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stdout == ""
    assert list(run_outputs(open_session(features, "cpu"), np.zeros((2, 1, 16, 12), np.float32))) \
        == ["layer2"]


@settings(max_examples=examples(60), deadline=None)
@given(h_in=st.integers(1, 40), w_in=st.integers(1, 40), h=st.integers(1, 48),
       w=st.integers(1, 48), mode=st.sampled_from(["bilinear", "nearest", "bicubic"]),
       seed=st.integers(0, 2**16))
def test_numpy_resize_equals_torch_interpolate(h_in, w_in, h, w, mode, seed):
    x = np.random.default_rng(seed).random((2, 3, h_in, w_in), dtype=np.float32)
    options = {} if mode == "nearest" else {"align_corners": False}
    want = F.interpolate(torch.from_numpy(x), size=(h, w), mode=mode, **options).numpy()
    got = resize(x, (h, w), mode)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-5


def test_a_training_runs_class_names_reach_the_onnx_file(tmp_path):
    """train on an image folder records the folder names; --emit onnx with the run's weights
    writes them into the metadata, and infer prints them."""
    import yaml
    files = _digit_files(tmp_path / "data", 30)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(_spec(1)))
    r = run_cli("train", spec, "--dataset", "folder", "--data-dir", tmp_path / "data",
                "--epochs", "1", "--batch-size", "16", "--out", tmp_path / "run", timeout=600)
    assert r.returncode == 0, r.stderr[-400:]
    model = tmp_path / "m.onnx"
    r = run_cli(spec, "--emit", "onnx", "--weights", tmp_path / "run" / "model.safetensors",
                "-o", model)
    assert r.returncode == 0, r.stderr
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert props["class_names"] == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'
    r = run_cli("infer", model, files[0], "--top-k", "1", "--device", "cpu")
    assert r.returncode == 0 and re.fullmatch(r".*: \d \d\.\d{4}\n", r.stdout), r.stdout
