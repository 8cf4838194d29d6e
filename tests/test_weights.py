"""Weights: safe checkpoint loading, checks against the graph, seeded initialisation, and the
CLI's refusals of bad checkpoints (exit 2, one message, nothing executed, nothing written)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from support import run_cli

import resnet_compiler as rc
from resnet_compiler.errors import UsageError
from resnet_compiler.runtime.weights import (
    as_numpy_state_dict,
    check_state_dict,
    expected_tensors,
    init_weights,
    load_checkpoint,
)

SPEC = "spec/resnet20_cifar.yaml"


@pytest.fixture(scope="module")
def net() -> rc.CompiledNetwork:
    return rc.compile(SPEC)


@pytest.fixture(scope="module")
def state(net) -> dict[str, torch.Tensor]:
    return net.build_torch().state_dict()


class Payload:
    """Unpickling this would run a command that creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_load_pt_safetensors_and_training_wrapper(tmp_path, state):
    torch.save(state, tmp_path / "plain.pt")
    torch.save({"state_dict": state, "spec": "{}", "metrics": [{"epoch": 1, "loss": 0.5}]},
               tmp_path / "train.pt")
    torch.save({"model": state}, tmp_path / "model.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for name in ("plain.pt", "train.pt", "model.pth", "w.safetensors"):
        sd = load_checkpoint(tmp_path / name)
        assert set(sd) == set(state), name
        assert all(isinstance(v, np.ndarray) for v in sd.values())
        np.testing.assert_array_equal(sd["conv1.weight"], state["conv1.weight"].numpy())


def test_as_numpy_accepts_torch_numpy_and_bfloat16(state):
    sd = as_numpy_state_dict({k: v.to(torch.bfloat16) if v.is_floating_point() else v
                              for k, v in state.items()})
    assert sd["fc.weight"].dtype == np.float32
    assert all(as_numpy_state_dict(sd)[k] is v for k, v in sd.items())  # numpy passes through
    with pytest.raises(UsageError, match="not a state_dict"):
        as_numpy_state_dict([1, 2, 3])


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such checkpoint"),
    (lambda p: p.mkdir(), "not a file"),
    (lambda p: p.write_bytes(os.urandom(256)), "cannot read the checkpoint"),
    (lambda p: torch.save([torch.zeros(2)], p), "not a state_dict"),
    (lambda p: torch.save({"a": 1, "b": torch.zeros(1)}, p), "'a' is not tensors|a is not"),
    (lambda p: torch.save({}, p), "empty"),
])
def test_bad_checkpoints_are_usage_errors(tmp_path, make, message):
    path = tmp_path / "ckpt.pt"
    make(path)
    with pytest.raises(UsageError, match=message):
        load_checkpoint(path)


def test_truncated_checkpoint_and_bad_safetensors(tmp_path, state):
    torch.save(state, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="cannot read"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(UsageError, match="safetensors"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_pickled_object_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "executed"
    torch.save({"state_dict": {"x": Payload(str(marker))}}, tmp_path / "evil.pt")
    with pytest.raises(UsageError, match="refusing to unpickle"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_check_state_dict_lists_missing_unexpected_misshaped(net, state):
    sd = as_numpy_state_dict(state)
    check_state_dict(net.graph, sd)
    sd.pop("conv1.weight")
    sd["extra.weight"] = np.zeros(3, np.float32)
    sd["fc.bias"] = np.zeros(7, np.float32)
    with pytest.raises(UsageError) as e:
        check_state_dict(net.graph, sd)
    text = str(e.value)
    assert "1 missing: conv1.weight" in text and "1 unexpected: extra.weight" in text
    assert "fc.bias (checkpoint 7, network 10)" in text and "\n" not in text
    many = {f"junk{i}": np.zeros(1, np.float32) for i in range(20)}
    with pytest.raises(UsageError, match=r"20 unexpected: .*\(and 14 more\)"):
        check_state_dict(net.graph, {**as_numpy_state_dict(state), **many})
    no_counter = {k: v for k, v in as_numpy_state_dict(state).items()
                  if not k.endswith("num_batches_tracked")}
    check_state_dict(net.graph, no_counter)  # the BN step counter is optional


def test_init_weights_seeded_and_shaped(net, state):
    a, b = init_weights(net.graph, seed=3), init_weights(net.graph, seed=3)
    assert list(a) == list(expected_tensors(net.graph)) and set(a) == set(state)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], init_weights(net.graph, seed=4)["conv1.weight"])
    for k, v in a.items():
        assert v.shape == tuple(state[k].shape), k
        assert v.dtype == (np.int64 if k.endswith("num_batches_tracked") else np.float32)
    w = init_weights(rc.compile("spec/resnet50.yaml").graph)["layer3.0.conv2.weight"]
    assert abs(w.std() - np.sqrt(2 / (256 * 9))) < 0.05 * np.sqrt(2 / (256 * 9))  # fan_out
    assert np.all(a["bn1.weight"] == 1) and np.all(a["bn1.running_var"] == 1)
    r = init_weights(net.graph, realistic_bn=True)
    assert 0.3 <= r["bn1.weight"].min() and r["bn1.weight"].max() <= 0.7
    assert 0.75 <= r["bn1.running_var"].min() and r["bn1.running_var"].max() <= 1.25
    assert r["bn1.num_batches_tracked"].shape == () and np.abs(r["bn1.running_mean"]).max() < 1


def test_cli_refuses_mismatched_checkpoint(tmp_path, state):
    bad = {k: v for k, v in state.items() if k != "conv1.weight"}
    bad["surprise.weight"] = torch.zeros(2)
    bad["fc.weight"] = torch.zeros(3, 3)
    torch.save(bad, tmp_path / "bad.pt")
    out = tmp_path / "m.onnx"
    r = run_cli(SPEC, "--emit", "onnx", "--weights", tmp_path / "bad.pt", "-o", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing: conv1.weight" in r.stderr and "unexpected: surprise.weight" in r.stderr
    assert "fc.weight (checkpoint 3x3, network 10x64)" in r.stderr
    assert not out.exists()


def test_cli_refuses_non_state_dict_and_pickled_object(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    marker = tmp_path / "executed"
    torch.save({"model": Payload(str(marker))}, tmp_path / "evil.pt")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")
    for name, message in (("list.pt", "not a state_dict"), ("evil.pt", "refusing to unpickle")):
        r = run_cli(SPEC, "--emit", "onnx", "--weights", tmp_path / name, "-o", out)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    assert out.read_bytes() == b"previous"  # an existing output is left untouched
