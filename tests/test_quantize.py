"""int8 ONNX (`--quantize int8 --calibrate DATASET`): a network trained on digits in the test,
quantized with calibration on the training split, keeps its test accuracy within 1 point of fp32
in onnxruntime; the file is QDQ with int8 weights and keeps the fp32 file's metadata."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from support import ROOT, run_cli

import resnet_compiler as rc
from resnet_compiler.cli import main as cli_main
from resnet_compiler.train.data import fit_batch, load_digits

SPEC = """\
name: digits_int8
input: {channels: 1, height: 16, width: 16}
num_classes: 10
stem:
  - {op: conv, name: conv1, channels: 16, kernel: 3}
  - {op: bn, name: bn1}
  - {op: relu, name: relu}
stages:
  - {block: basic, depth: 1, channels: 16}
  - {block: basic, depth: 1, channels: 32, stride: 2}
head: {pool: avg}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The spec and its checkpoint after a short training on digits (a few seconds)."""
    d = tmp_path_factory.mktemp("int8")
    spec = d / "digits_int8.yaml"
    spec.write_text(SPEC)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main(["train", str(spec), "--dataset", "digits", "--epochs", "8",
                         "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9",
                         "--out", str(d / "run")]) == 0
    finally:
        torch.set_num_threads(threads)
    return spec, d / "run" / "checkpoint.pt"


def _accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pred = s.run(None, {"input": x})[0].argmax(1)
    return float((pred == y).mean()), pred


def test_int8_accuracy_within_one_point_of_fp32(trained: tuple[Path, Path], tmp_path: Path) -> None:
    spec, ckpt = trained
    q, f = tmp_path / "int8.onnx", tmp_path / "fp32.onnx"
    r = run_cli(spec, "--emit", "onnx", "--quantize", "int8", "--calibrate", "digits",
                "--calibration-images", "128", "--weights", ckpt, "-o", q)
    assert r.returncode == 0, r.stderr
    assert "calibrated on 128 digits training images" in r.stdout
    printed = re.search(r"test accuracy: fp32 ([\d.]+)%, int8 ([\d.]+)%", r.stdout)
    agree = re.search(r"top-1 agreement with fp32: ([\d.]+)% of 360 test images", r.stdout)
    assert printed and agree, r.stdout

    # the same numbers, measured here: torch fp32 and the int8 file in onnxruntime
    net = rc.compile(spec)
    model = net.build_torch().eval()
    model.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    ds = load_digits()
    x = fit_batch(ds.test_images, 1, (16, 16)).contiguous()
    y = ds.test_labels.numpy()
    with torch.no_grad():
        torch_pred = model(x).argmax(1).numpy()
    net.to_onnx(f, weights=ckpt)
    fp32_acc, fp32_pred = _accuracy(f, x.numpy(), y)
    int8_acc, int8_pred = _accuracy(q, x.numpy(), y)
    assert (fp32_pred == torch_pred).all()
    assert fp32_acc >= 0.8  # trained, so that the comparison means something
    assert abs(int8_acc - fp32_acc) <= 0.01
    assert float(printed[1]) == pytest.approx(100 * fp32_acc, abs=0.01)
    assert float(printed[2]) == pytest.approx(100 * int8_acc, abs=0.01)
    assert float(agree[1]) == pytest.approx(100 * float((fp32_pred == int8_pred).mean()), abs=0.01)

    model_q = onnx.load(q)
    ops = {n.op_type for n in model_q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in model_q.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 5  # every conv's and the classifier's weights
    meta = {p.key: p.value for p in model_q.metadata_props}
    assert meta["spec_sha256"] == net.graph.graph["spec_sha256"]
    assert meta["quantization"].startswith("int8 static QDQ, per-channel")


def test_untrained_weights_report_no_accuracy(tmp_path: Path) -> None:
    """Without --weights the seeded initialisation is quantized; its accuracy would be chance, so
    the report says so instead of printing a figure a user could take for a regression."""
    spec = tmp_path / "digits_int8.yaml"
    spec.write_text(SPEC)
    r = run_cli(str(spec), "--emit", "onnx", "--quantize", "int8", "--calibrate", "digits",
                "--calibration-images", "32", "-o", str(tmp_path / "q.onnx"))
    assert r.returncode == 0, r.stderr
    assert "test accuracy: not meaningful for seeded random weights" in r.stdout
    assert "top-1 agreement with fp32:" in r.stdout
    assert (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("args, message", [
    (["--emit", "onnx", "--quantize", "int8", "-o", "q.onnx"], "needs --calibrate DATASET"),
    (["--emit", "onnx", "--calibrate", "digits", "-o", "q.onnx"], "--calibrate goes with --quantize"),
    (["--emit", "torch", "--quantize", "int8", "--calibrate", "digits"],
     "--quantize is for --emit onnx"),
    (["--emit", "onnx", "--quantize", "int8", "--calibrate", "digits", "--dtype", "fp16",
      "-o", "q.onnx"], "--quantize int8 takes no --dtype"),
    (["--emit", "onnx", "--quantize", "int8", "--calibrate", "mnist", "-o", "q.onnx"],
     "invalid choice: 'mnist'"),
    (["--emit", "onnx", "--quantize", "int8", "--calibrate", "fashion-mnist", "-o", "q.onnx"],
     "--calibrate fashion-mnist needs --data-dir DIR"),
    (["--emit", "onnx", "--quantize", "int8", "--calibrate", "fashion-mnist", "--data-dir",
      "nowhere", "-o", "q.onnx"], "nowhere: data folder not found"),
])
def test_misuse_is_one_line_exit_2(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    spec = ROOT / "spec" / "resnet20_cifar.yaml"
    args = [str(tmp_path / a) if a in ("q.onnx", "nowhere") else a for a in args]
    assert cli_main([str(spec), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q.onnx").exists()
