"""Sizes checked before anything is allocated: `--verify` and `--sizes` against the input-side
and activation limits, ONNX preprocessing metadata tampered with (sizes, mean, std, nesting),
and `infer` / `bench` on such files. Each refusal is one line and exit 2, in well under a
second, with little memory."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from PIL import Image
from support import run_main

import resnet_compiler as rc
from resnet_compiler.runtime import limits

SMALL = {"name": "tiny", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 4,
         "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
SIDE = "(RESNET_COMPILER_MAX_INPUT_SIDE raises the limit)"


def _refused_cheaply(*argv: object) -> list[str]:
    """Exit 2 with one line, under 10 s and 64 MiB of Python memory."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        code, lines = run_main(*argv)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 2 and len(lines) == 1, lines
    assert time.perf_counter() - start < 10 and peak < 64 << 20, (peak, lines)
    return lines


# ---- --verify and --sizes --------------------------------------------------------------------

@pytest.mark.parametrize("sizes, words", [
    ("100000x100000", f"resnet50 at 100000x100000: the input height is 100000; it must be from "
                      f"1 to {limits.MAX_INPUT_SIDE} pixels {SIDE}"),
    ("64x64,224x20000", f"resnet50 at 224x20000: the input width is 20000; it must be from 1 to"
                        f" {limits.MAX_INPUT_SIDE} pixels {SIDE}"),
    ("2000x2000", "resnet50 at 2000x2000: 2 images of 2000x2000 need about 22.4 GiB of "
                  "activations (estimated from the graph); the limit is 8.0 GiB "
                  "(RESNET_COMPILER_MAX_ACTIVATION_BYTES raises it)"),
])
def test_verify_sizes_past_the_limits(sizes: str, words: str) -> None:
    assert _refused_cheaply("resnet50", "--verify", "--sizes", sizes) == [f"error: {words}"]


@pytest.mark.parametrize("sizes", ["0x5", "-5x5", "1e9x1", "axb", "64"])
def test_verify_sizes_that_are_not_sizes(sizes: str) -> None:
    assert "is not a size like 64x96" in _refused_cheaply("resnet50", "--verify",
                                                          f"--sizes={sizes}")[0]


def test_verify_at_a_huge_spec_size(tmp_path: Path) -> None:
    """A spec may say any input size (--check works, it is arithmetic); running it is limited."""
    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump({**SMALL, "input": {"channels": 3, "height": 30000,
                                                       "width": 30000}}))
    assert run_main(spec, "--check")[0] == 0
    lines = _refused_cheaply(spec, "--verify")
    assert "the input height is 30000" in lines[0]
    spec.write_text(yaml.safe_dump({**SMALL, "input": {"channels": 3, "height": 9000,
                                                       "width": 9000}}))
    assert "of activations (estimated from the graph)" in _refused_cheaply(spec, "--verify")[0]
    assert "of activations" in _refused_cheaply("bench", spec, "--batch", "1")[0]


def test_activation_estimate_bounds_the_real_count() -> None:
    """The estimate scales the graph's own count by the pixels: at the spec size it is the
    count itself (plus the input), and it grows with the area."""
    net = rc.compile("resnet18")
    at_own = limits.activation_bytes(net.ir.graph, 224, 224, 1)
    assert at_own == (net.ir.graph["total_acts"] + 3 * 224 * 224) * 4
    assert limits.activation_bytes(net.ir.graph, 448, 448, 2) == 8 * at_own


# ---- ONNX preprocessing metadata -------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    net = rc.compile(SMALL)
    out = {"fixed": folder / "fixed.onnx", "dynamic": folder / "dynamic.onnx",
           "image": folder / "img.png"}
    net.to_onnx(out["fixed"], class_names=["a", "b", "c", "d"])
    net.to_onnx(out["dynamic"], dynamic_hw=True)
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(out["image"])
    return out


def _tampered(source: Path, folder: Path, key: str, value: str) -> Path:
    model = onnx.load(str(source))
    props = {p.key: p.value for p in model.metadata_props}
    props[key] = value
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    path = folder / "tampered.onnx"
    onnx.save(model, str(path))
    return path


def _pre(**changes: Any) -> str:
    d = {"channels": 3, "height": 16, "width": 16, "resize": "bilinear",
         "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "scale": 1 / 255}
    d.update(changes)
    return json.dumps({k: v for k, v in d.items() if v is not ...})


META = "the preprocessing metadata"


@pytest.mark.parametrize("value, words", [
    (_pre(height=0), f"{META}'s height is 0; it must be a whole number of at least 1"),
    (_pre(width=-5), f"{META}'s width is -5; it must be a whole number of at least 1"),
    (_pre(height=1e9), f"{META}'s height is 1000000000.0; it must be a whole number of at least 1"),
    (_pre(height=10**9), f"{META}'s height is 1000000000; it must be from 1 to "
                         f"{limits.MAX_INPUT_SIDE} pixels {SIDE}"),
    (_pre(height=30000, width=30000), f"{META}'s height is 30000; it must be from 1 to "
                                      f"{limits.MAX_INPUT_SIDE} pixels {SIDE}"),
    (_pre(height=1000), f"{META} says 3x1000x16, the model's input is 3x16x16"),
    (_pre(height=True), f"{META}'s height is True; it must be a whole number of at least 1"),
    (_pre(channels=...), f"{META} has no channels"),
    (_pre(std=[0.25, 0, 0.25]), f"{META}'s std is [0.25, 0.0, 0.25]; every value must be "
                                "above 0 (it divides)"),
    (_pre(std=[0.25, -1, 0.25]), "every value must be above 0"),
    (_pre(mean=[0.5, 0.5]), f"{META}'s mean has 2 values for 3 channels"),
    (_pre(std=[0.1] * 4), f"{META}'s std has 4 values for 3 channels"),
    (_pre(mean=[0.5, "x", 0.5]), f"{META}'s mean is [0.5, 'x', 0.5]; it must be a list of "
                                 "finite numbers"),
    (_pre(mean=None), f"{META} gives only one of mean and std"),
    (_pre(resize="lanczos"), f"{META}'s resize is 'lanczos'; it must be one of bilinear, "
                             "nearest, bicubic"),
    (_pre(scale=0), f"{META}'s scale is 0; it must be a number above 0"),
    (_pre(scale=...).replace("}", ', "scale": NaN}'), f"{META}'s scale is nan"),
    ("[" * 100_000 + "]" * 100_000, f"{META} is nested deeper than 40 levels"),
    ('{"channels": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 40 levels"),
    ("{not json", f"{META} is not valid JSON"),
    ("[1, 2]", f"{META} is not a JSON object"),
])
def test_tampered_preprocessing_metadata(files: dict[str, Path], tmp_path: Path, value: str,
                                         words: str) -> None:
    model = _tampered(files["fixed"], tmp_path, "preprocessing", value)
    line = _refused_cheaply("infer", model, files["image"])[0]
    assert line.startswith("error: ") and words in line, line


def test_deep_class_names_metadata(files: dict[str, Path], tmp_path: Path) -> None:
    model = _tampered(files["fixed"], tmp_path, "class_names", "[" * 100_000 + "]" * 100_000)
    assert "class_names metadata is not a JSON list of strings" in _refused_cheaply(
        "infer", model, files["image"])[0]


def test_dynamic_model_at_a_huge_metadata_size(files: dict[str, Path], tmp_path: Path) -> None:
    """A --dynamic-hw file takes any size; its metadata's size is limited by the activations
    the graph (compiled from its spec_text) needs there."""
    model = _tampered(files["dynamic"], tmp_path, "preprocessing", _pre(height=16000,
                                                                        width=16000))
    line = _refused_cheaply("infer", model, files["image"])[0]
    assert line.startswith("error: the model: 1 image of 16000x16000 need about ") and \
        "of activations (estimated from the graph); the limit is 8.0 GiB" in line, line
    assert "of activations" in _refused_cheaply("bench", model, "--batch", "1")[0]
    ok = _tampered(files["dynamic"], tmp_path, "preprocessing", _pre(height=40, width=24))
    assert run_main("infer", ok, files["image"])[0] == 0


def test_untampered_models_classify(files: dict[str, Path]) -> None:
    for name in ("fixed", "dynamic"):
        assert run_main("infer", files[name], files["image"])[0] == 0


def test_deep_json_in_checkpoint_metadata(tmp_path: Path) -> None:
    """A safetensors file whose metadata nests 100,000 levels: its reader refuses it in one
    line, and --emit onnx --weights leaves the class names out rather than failing."""
    from safetensors.torch import save_file

    from resnet_compiler.errors import UsageError
    from resnet_compiler.train.checkpoint import read_metadata
    state = rc.compile(SMALL).build_torch().state_dict()
    ckpt = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, ckpt,
              metadata={"class_names": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(UsageError, match="metadata class_names is nested deeper than 40 levels"):
        read_metadata(ckpt)
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    assert run_main(spec, "--emit", "onnx", "--weights", ckpt, "-o", tmp_path / "m.onnx")[0] == 0


def test_huge_batches_are_refused_before_allocating(files: dict[str, Path]) -> None:
    """The batch multiplies the activations: --verify and bench (a spec or an ONNX file) check
    the biggest batch they will run."""
    words = "images of 224x224 need about"
    assert words in _refused_cheaply("resnet18", "--verify", "--batch", "100000")[0]
    assert words in _refused_cheaply("bench", "resnet18", "--batch", "1,100000")[0]
    line = _refused_cheaply("bench", files["fixed"], "--batch", "10000000", "--runs", "1")[0]
    assert "10000000 images of 16x16 need about" in line, line


def test_train_at_a_huge_input_size(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump({**SMALL, "input": {"channels": 1, "height": 12000,
                                                       "width": 12000}, "num_classes": 10}))
    code, lines = run_main("train", spec, "--dataset", "digits", "--epochs", "1", "--out",
                       tmp_path / "run")
    assert code == 2 and lines[-1].startswith("error: tiny at 12000x12000: 128 images of "
                                              "12000x12000 need about "), lines
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
