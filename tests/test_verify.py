"""verify (torch vs onnxruntime) through the API and the real CLI, and the inference helper."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from support import ROOT, flat_spec, run_cli

import resnet_compiler as rc
from resnet_compiler.errors import UsageError
from resnet_compiler.runtime.infer import (
    classify,
    open_session,
    predict_logits,
    session_device,
)
from resnet_compiler.runtime.verify import VerifyReport, verify
from resnet_compiler.runtime.weights import init_weights

SPEC = "spec/resnet20_cifar.yaml"
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def net() -> rc.CompiledNetwork:
    return rc.compile(SPEC)


def test_verify_report(net):
    report = verify(net, batch=3)
    assert report.ok and report.batch == 3 and report.argmax_agree == 3
    assert report.max_rel <= 1e-4 and report.torch_ms > 0 and report.ort_ms > 0
    assert report.values_checked == net.graph.number_of_nodes() and not report.shape_mismatches
    assert report.modules_checked > 20  # every conv/bn/relu/pool module's torch shape
    text = report.format()
    for fact in ("verify resnet20_cifar: ok", "rel err", "argmax agrees on 3/3",
                 "checker (full): passed", "ms/batch", "BatchNorm folded"):
        assert fact in text


def test_verify_unfolded_with_weights_and_custom_block(tmp_path):
    net = rc.compile(ROOT / "examples" / "custom_block.yaml")
    sd = init_weights(net.graph, seed=5, realistic_bn=True)
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in sd.items()}}, tmp_path / "w.pt")
    report = verify(net, weights=tmp_path / "w.pt", batch=1, fold_bn=False, opset=17)
    assert report.ok, report.format()
    assert "BatchNorm kept" in report.format() and "opset 17" in report.format()


def test_report_fails_beyond_tolerance_and_on_shape_mismatch():
    base = dict(name="n", batch=1, torch_device="cpu", ort_device="cpu", fold_bn=True, opset=21)
    assert VerifyReport(**base, max_abs=5e-5, scale=1.0).ok
    assert VerifyReport(**base, max_abs=5e-4, scale=10.0).ok  # relative to max|torch|
    bad = VerifyReport(**base, max_abs=2e-4, scale=1.0)
    assert not bad.ok and "exceeds tolerance" in bad.format()
    assert not VerifyReport(**base, max_abs=float("inf")).ok
    shapes = VerifyReport(**base, shape_mismatches=["onnx x: [1] vs graph [2]"])
    assert not shapes.ok and "1 mismatches" in shapes.format()


def test_float64_decides_where_fp32_rounding_alone_exceeds_the_tolerance():
    base = dict(name="n", batch=1, torch_device="cpu", ort_device="cpu", fold_bn=True, opset=21,
                max_abs=3e-4, scale=1.0)
    rounding = VerifyReport(**base, exact_torch=2e-4, exact_ort=2.5e-4)
    assert rounding.ok and "float64 run of the emitted module" in rounding.format()
    assert "not a different function" in rounding.format()
    other = VerifyReport(**base, exact_torch=1e-6, exact_ort=3e-4)
    assert not other.ok and "computes another function" in other.format()


def test_the_float64_arbiter_measures_both_runtimes(net, monkeypatch):
    """With a tolerance no fp32 run can meet, verify runs the emitted module in float64 and
    finds onnxruntime as close to it as torch fp32 is: the verdict is argued, not a false alarm."""
    from resnet_compiler.runtime import verify as verify_module
    monkeypatch.setitem(verify_module.TOLERANCES, "fp32", (1e-12, "no fp32 run meets this"))
    report = verify(net, batch=2)
    assert not report.within_tolerance
    assert report.exact_torch is not None and 0 < report.exact_torch < 1e-5
    assert report.exact_ort is not None and report.exact_ort < 1e-5
    assert report.ok == (report.exact_ort <= 2 * report.exact_torch)
    assert "float64 run of the emitted module" in report.format()


def test_cli_verify_exit_codes(tmp_path):
    r = run_cli(SPEC, "--verify", "--no-fold-bn", "--batch", "3")
    assert r.returncode == 0, r.stderr
    assert "verify resnet20_cifar: ok" in r.stdout and r.stderr == ""  # no CUDA noise
    if not CUDA:
        r = run_cli(SPEC, "--verify", "--device", "cuda")
        assert r.returncode == 2 and "no CUDA device is available" in r.stderr
        assert "Traceback" not in r.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_verify_on_cuda(net):
    report = verify(net, device="cuda")
    assert report.ok, report.format()


def test_infer_session_classify(net, tmp_path, capfd):
    sd = init_weights(net.graph, realistic_bn=True)
    path = tmp_path / "m.onnx"
    net.to_onnx(path, weights=sd)
    session = open_session(path)  # auto: CUDA only where it works, and quietly otherwise
    assert session_device(session) == ("cuda" if CUDA else "cpu")
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    logits = predict_logits(session, x)
    module = net.build_torch()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    with torch.inference_mode():
        want = module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, want, atol=1e-4)
    result = classify(session, torch.from_numpy(x), top_k=3)
    assert result.top_indices.shape == (4, 3) and result.probs.shape == (4, 10)
    np.testing.assert_allclose(result.probs.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(result.top_indices[:, 0], want.argmax(1))
    assert np.all(np.diff(result.top_probs, axis=1) <= 0)
    assert result.labels([f"c{i}" for i in range(10)])[0][0] == f"c{want.argmax(1)[0]}"
    assert classify(session, x[0]).top_indices.shape == (1, 5)  # a single CHW image
    with pytest.raises(UsageError, match="the model takes"):
        predict_logits(session, np.zeros((1, 3, 28, 28), np.float32))
    with pytest.raises(UsageError, match="no such ONNX file"):
        open_session(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UsageError, match="cannot load"):
        open_session(tmp_path / "junk.onnx", device="cpu")
    if not CUDA:
        with pytest.raises(UsageError, match="CUDA is not available"):
            open_session(path, device="cuda")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_onnx_inference_example_runs():
    """The example trains on the digits, exports ONNX and gets the training run's accuracy."""
    r = subprocess.run([sys.executable, "examples/onnx_inference.py"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    found = re.search(r"test accuracy: torch \(training run\) ([0-9.]+), onnxruntime ([0-9.]+)",
                      r.stdout)
    assert found and found[1] == found[2], r.stdout  # the example also compares the counts
    assert float(found[2]) >= 0.8, r.stdout
    assert "Traceback" not in r.stderr and "warning" not in r.stderr.lower()


@pytest.mark.parametrize("name", ["ecaresnet50d", "resnetblur50", "skresnet18", "resnest14d"])
def test_verify_passes_for_modules_that_compute_constants_when_built(name: str) -> None:
    """ECA's kernel size and blur pooling's fixed filter are computed in the constructor; split
    parts are ONNX values of their own. verify builds real modules and checks every value."""

    from resnet_compiler.runtime.verify import verify
    spec = flat_spec(ROOT / "spec" / "zoo" / f"{name}.yaml")
    spec["input"] = {"channels": 3, "height": 64, "width": 64}
    report = verify(rc.compile(spec))
    assert report.ok, report.format()
