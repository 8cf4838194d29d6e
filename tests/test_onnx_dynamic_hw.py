"""ONNX with symbolic height and width (`--dynamic-hw`): one file serves every input size, and
onnxruntime agrees with torch at each, for every preset family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from support import ROOT, run_cli

import resnet_compiler as rc
from resnet_compiler.runtime.weights import init_weights

FAMILIES = {  # basic, bottleneck, pre-activation, ResNet-D, SE, and the grown language
    "basic": "spec/resnet18.yaml",
    "bottleneck": "spec/resnext50_32x4d.yaml",
    "pre-activation": "spec/resnetv2_50.yaml",
    "resnet-d": "spec/resnet50d.yaml",
    "se": "spec/seresnet50.yaml",
    "blur pool": "spec/zoo/resnetblur50.yaml",
    "group norm, std conv, pad": "spec/zoo/resnetv2_50x1_bit.yaml",
    "eca, resnet-d": "spec/zoo/ecaresnet50d.yaml",
}
SIZES = [(64, 64), (96, 128), (160, 112)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_file_runs_every_size_like_torch(tmp_path: Path, family: str) -> None:
    net = rc.compile(ROOT / FAMILIES[family])
    sd = init_weights(net.graph, realistic_bn=True)
    path = tmp_path / "m.onnx"
    net.to_onnx(path, weights=sd, dynamic_hw=True)
    dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    model = net.build_torch().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_cli_flag_and_its_misuse(tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    r = run_cli(ROOT / "spec" / "resnet20_cifar.yaml", "--emit", "onnx", "--dynamic-hw", "-o", out)
    assert r.returncode == 0 and r.stderr.strip() == f"wrote {out}"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = session.run(None, {"input": np.zeros((1, 3, 64, 48), np.float32)})[0]
    assert y.shape == (1, 10)
    r = run_cli(ROOT / "spec" / "resnet20_cifar.yaml", "--emit", "torch", "--dynamic-hw")
    assert r.returncode == 2 and "--dynamic-hw is for --emit onnx" in r.stderr


def test_verify_checks_each_size(tmp_path: Path) -> None:
    r = run_cli(ROOT / "spec" / "zoo" / "resnet50_gn.yaml", "--verify", "--sizes", "64x64,96x128")
    assert r.returncode == 0, r.stderr
    assert "verify resnet50_gn: ok" in r.stdout
    assert "  64x64: max abs err" in r.stdout and "  96x128: max abs err" in r.stdout
    r = run_cli(ROOT / "spec" / "resnet18.yaml", "--check", "--sizes", "64x64")
    assert r.returncode == 2 and "--sizes goes with --verify" in r.stderr
    r = run_cli(ROOT / "spec" / "resnet18.yaml", "--verify", "--sizes", "64xx")
    assert r.returncode == 2 and "is not a size like" in r.stderr
