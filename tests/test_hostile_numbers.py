"""Broken numbers in checkpoints: a state_dict with NaN or infinite values is refused by
`--emit onnx --weights`, `--verify --weights` and `train --init-weights`, one line naming each
tensor and what it holds, before anything is written or trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from support import run_main

import resnet_compiler as rc

SMALL = {"name": "tiny", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 4,
         "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
GRAY = {"name": "gray", "input": {"channels": 1, "height": 8, "width": 8}, "num_classes": 10,
        "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
PREFIX = "error: the weights hold NaN or infinite values in "
SUFFIX = "; a network cannot compute with them (was the training run diverging?)"


def _state(spec: dict) -> dict[str, torch.Tensor]:
    return rc.compile(spec).build_torch().state_dict()


def _broken(spec: dict, changes: dict[str, tuple[tuple[int, ...], float]],
            dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in _state(spec).items()}
    for key, (index, value) in changes.items():
        state[key][index] = value
    return state


NAN, INF = float("nan"), float("inf")
CASES = [
    ({"layer1.0.conv1.weight": ((0, 0, 0, 0), NAN)}, torch.float32,
     "1 tensor: layer1.0.conv1.weight (1 NaN)"),
    ({"fc.bias": ((1,), INF), "layer1.0.bn1.running_var": ((2,), -INF)}, torch.float32,
     "2 tensors: layer1.0.bn1.running_var (1 inf), fc.bias (1 inf)"),
    ({"fc.weight": ((0, 0), NAN)}, torch.float16, "1 tensor: fc.weight (1 NaN)"),
    ({"layer1.0.bn2.weight": ((0,), INF)}, torch.float64, "1 tensor: layer1.0.bn2.weight (1 inf)"),
]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("changes, dtype, listed", CASES)  # fp32, fp16, fp64
def test_emit_onnx_refuses_non_finite_weights(tmp_path: Path, suffix: str, changes: dict,
                                              dtype: torch.dtype, listed: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    state = _broken(SMALL, changes, dtype)
    ckpt = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": state, "epoch": 3}, ckpt)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, ckpt)
    out = tmp_path / "m.onnx"
    code, lines = run_main(spec, "--emit", "onnx", "--weights", ckpt, "-o", out)
    assert code == 2 and lines == [PREFIX + listed + SUFFIX], lines
    assert not out.exists()


def test_verify_and_bench_refuse_them_too(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    ckpt = tmp_path / "w.pt"
    torch.save(_broken(SMALL, {"fc.bias": ((0,), NAN)}), ckpt)
    for argv in (["--verify"], ["bench", "--batch", "1", "--runs", "1"]):
        args = [spec, *argv, "--weights", ckpt] if argv[0] == "--verify" else \
            [argv[0], spec, *argv[1:], "--weights", ckpt]
        code, lines = run_main(*args)
        assert code == 2 and lines == [PREFIX + "1 tensor: fc.bias (1 NaN)" + SUFFIX], lines


def test_many_broken_tensors_are_counted_in_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    state = {k: (torch.full_like(v, NAN) if v.is_floating_point() else v)
             for k, v in _state(SMALL).items()}
    ckpt = tmp_path / "w.pt"
    torch.save(state, ckpt)
    code, lines = run_main(spec, "--emit", "onnx", "--weights", ckpt, "-o", tmp_path / "m.onnx")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(PREFIX + "17 tensors: layer1.0.conv1.weight (216 NaN)")
    assert "(and 11 more)" in lines[0]


def test_train_init_weights_refuses_them_before_training(tmp_path: Path) -> None:
    spec = tmp_path / "gray.yaml"
    spec.write_text(yaml.safe_dump(GRAY))
    ckpt = tmp_path / "init.pt"
    torch.save(_broken(GRAY, {"layer1.0.conv2.weight": ((1, 1, 1, 1), NAN)}), ckpt)
    out = tmp_path / "run"
    code, lines = run_main("train", spec, "--dataset", "digits", "--epochs", "1", "--init-weights",
                       ckpt, "--out", out)
    assert code == 2, lines
    assert lines[-1] == PREFIX + "1 tensor: layer1.0.conv2.weight (1 NaN)" + SUFFIX, lines
    assert not any("epoch 1/1" in line or "became nan" in line for line in lines), lines
    assert not (out / "checkpoint.pt").exists()


def test_finite_weights_still_pass(tmp_path: Path) -> None:
    """The control: the same checkpoints without the broken values are accepted."""
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    ckpt = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in _state(SMALL).items()}, ckpt)
    assert run_main(spec, "--emit", "onnx", "--weights", ckpt, "-o", tmp_path / "m.onnx")[0] == 0
