"""Every supported opset, once each: a network with most op families (std conv, group norm, gelu,
blur pool, max pool, SE with hardswish, ECA with mish, ResNet-D shortcut, anti-aliased elu
block) runs in onnxruntime at opsets 13 to 26 and equals torch there. 26 is the newest opset
onnxruntime 1.31 loads; 27 is refused, by us and by it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from support import MIX, run_cli

import resnet_compiler as rc
from resnet_compiler.emit.onnx import MAX_OPSET, MIN_OPSET, emit_onnx
from resnet_compiler.runtime.weights import init_weights


@pytest.fixture(scope="module")
def mix() -> tuple[rc.CompiledNetwork, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    net = rc.compile(MIX)
    sd = init_weights(net.graph, realistic_bn=True)
    model = net.build_torch().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    return net, sd, x, want


@pytest.mark.parametrize("opset", range(MIN_OPSET, MAX_OPSET + 1))
def test_each_opset_runs_like_torch(mix, opset: int) -> None:
    net, sd, x, want = mix
    data = emit_onnx(net.graph, weights=sd, opset=opset)
    model = onnx.load_from_string(data)
    assert model.opset_import[0].version == opset
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    assert float(np.abs(got - want).max()) <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_opset_beyond_onnxruntime_is_refused(mix, tmp_path: Path) -> None:
    net, sd, _, _ = mix
    model = onnx.load_from_string(emit_onnx(net.graph, weights=sd, opset=MAX_OPSET))
    model.opset_import[0].version = MAX_OPSET + 1  # what onnxruntime says of the next one
    with pytest.raises(Exception, match="opset"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    r = run_cli("spec/resnet20_cifar.yaml", "--emit", "onnx", "--opset", str(MAX_OPSET + 1),
                "-o", tmp_path / "m.onnx")
    assert r.returncode == 2 and f"supported opsets are {MIN_OPSET} to {MAX_OPSET}" in r.stderr
    assert not (tmp_path / "m.onnx").exists()
