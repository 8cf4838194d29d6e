"""`resnet-compile train`: outputs and checkpoint format, exact resume, 2-process DDP under torchrun,
the seed network reaching >= 95% on digits, and the trained checkpoint exported to ONNX."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

import resnet_compiler as rc
from resnet_compiler import train
from resnet_compiler.cli import main as cli_main
from resnet_compiler.train.data import fit_batch, load_digits

SEED_SPEC = "spec/resnet18_fashion_mnist.yaml"
# the console scripts installed beside this interpreter (the test extra's environment)
RESNET_COMPILE = str(Path(sys.executable).with_name("resnet-compile"))
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
ROOT = Path(__file__).resolve().parent.parent

TINY_SPEC = """\
name: tiny
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem:
  - {op: conv, name: conv1, channels: 8, kernel: 3}
  - {op: bn, name: bn1}
  - {op: relu, name: relu}
stages:
  - {block: basic, depth: 1, channels: 8}
  - {block: basic, depth: 1, channels: 16, stride: 2}
head: {pool: avg}
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_SPEC)
    return p


@pytest.fixture()
def one_thread():
    """A 5k-parameter net on 8x8 inputs runs fastest (and least disturbed) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _train(spec: Path, out: Path, *extra: str) -> int:
    return cli_main(["train", str(spec), "--dataset", "digits", "--batch-size", "64", "--out", str(out),
                     *extra])


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_lr_schedules() -> None:
    assert train.lr_at("constant", 0.05, 7, 10) == 0.05
    assert train.lr_at("cosine", 0.05, 0, 10) == pytest.approx(0.05)
    assert train.lr_at("cosine", 0.05, 5, 10) == pytest.approx(0.025)
    assert train.lr_at("cosine", 0.05, 10, 10) == pytest.approx(0.0)
    assert [train.lr_at("step", 1.0, s, 8) for s in (0, 3, 4, 6, 7)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])


def test_outputs_and_checkpoint_format(tiny: Path, tmp_path: Path, one_thread: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _train(tiny, out, "--epochs", "2") == 0
    assert "world size: 1" in capsys.readouterr().err
    ck = _load(out / "checkpoint.pt")
    model = rc.compile(tiny).build_torch()
    assert list(ck["state_dict"]) == list(model.state_dict())
    model.load_state_dict(ck["state_dict"], strict=True)
    assert ck["epoch"] == 2 and len(ck["metrics"]) == 2 and isinstance(ck["spec"], str)
    assert ck["spec_sha256"] == rc.compile(tiny).graph.graph["spec_sha256"]
    from safetensors.torch import load_file
    st = load_file(out / "model.safetensors")
    assert all(torch.equal(st[k], v) for k, v in ck["state_dict"].items())
    pth = _load(out / "model.pth")
    assert list(pth) == list(ck["state_dict"]) and all(torch.equal(pth[k], v) for k, v in st.items())
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(train.METRICS_COLUMNS) <= set(rows[0])
    assert all(0.0 <= float(r["test_acc"]) <= 1.0 and float(r["images_per_s"]) > 0 for r in rows)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))


def test_resume_matches_uninterrupted(tiny: Path, tmp_path: Path, one_thread: None) -> None:
    full, split = tmp_path / "full", tmp_path / "split"
    common = ("--epochs", "4", "--momentum", "0.9", "--weight-decay", "1e-4")
    assert _train(tiny, full, *common) == 0
    assert _train(tiny, split, *common, "--stop-after", "2") == 0
    assert _load(split / "checkpoint.pt")["epoch"] == 2
    assert _train(tiny, split, *common, "--resume") == 0
    a, b = _load(full / "checkpoint.pt"), _load(split / "checkpoint.pt")
    assert b["epoch"] == 4 and len(b["metrics"]) == 4
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert [m["test_acc"] for m in a["metrics"]] == [m["test_acc"] for m in b["metrics"]]


def test_usage_errors_exit_2(tiny: Path, tmp_path: Path, one_thread: None,
                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _train(tiny, out, "--epochs", "1", "--resume") == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert _train(tiny, out, "--epochs", "1") == 0
    assert _train(tiny, out, "--epochs", "1") == 2  # would overwrite a finished run
    assert "--resume" in capsys.readouterr().err
    assert _train(tiny, out, "--epochs", "0") == 2
    assert _train(tiny, tmp_path / "o2", "--dataset", "fashion-mnist") == 2
    assert "--data-dir" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text(TINY_SPEC.replace("channels: 16", "channels: 12"))
    assert _train(other, out, "--epochs", "2", "--resume") == 2
    assert "different spec" in capsys.readouterr().err


def test_command_line_messages_name_the_flags(tiny: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Only the options layer speaks of flags, and it still does so for the command line."""
    nope = str(tmp_path / "nope")
    assert _train(tiny, tmp_path / "o", "--dataset", "fashion-mnist", "--data-dir", nope) == 2
    assert "add --download" in capsys.readouterr().err
    assert _train(tiny, tmp_path / "o", "--dataset", "folder") == 2
    assert "--dataset folder needs --data-dir" in capsys.readouterr().err
    assert _train(tiny, tmp_path / "o", "--download") == 2
    assert "--download fetches Fashion-MNIST" in capsys.readouterr().err
    from resnet_compiler.errors import UsageError
    from resnet_compiler.train import options
    with pytest.raises(UsageError, match="--batch-size 63 does not split evenly across 2 ranks"):
        options.check_batch_split(63, 2)
    if not torch.cuda.is_available():
        assert _train(tiny, tmp_path / "o2", "--device", "cuda") == 2
        assert "--device cuda: no CUDA device" in capsys.readouterr().err


def test_choose_device_is_neutral() -> None:
    from resnet_compiler.errors import UsageError
    assert train.choose_device("cpu") == "cpu"
    assert train.choose_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError) as e:
        train.choose_device("tpu")
    assert "--" not in str(e.value) and "tpu" in str(e.value)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA") as e:
            train.choose_device("cuda")
        assert "--" not in str(e.value)


def test_diverged_loss_message_is_neutral() -> None:
    from resnet_compiler.train.loop import EpochStats, check_finite
    check_finite(EpochStats([1.0, 2.0, 3.0], 0.1, 1.0), 1)
    with pytest.raises(RuntimeError, match="epoch 3; lower the learning rate") as e:
        check_finite(EpochStats([float("nan"), 2.0, 3.0], 0.1, 1.0), 3)
    assert "--" not in str(e.value)


def test_ddp_two_gloo_ranks_agree(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "resnet_compiler", "train",
                        str(tiny), "--dataset", "digits", "--epochs", "2", "--batch-size", "64",
                        "--out", str(out), "--print-weights-hash"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-2000:]
    assert "world size: 2" in log
    hashes = dict(re.findall(r"rank (\d) weights sha256 ([0-9a-f]{64})", log))
    assert set(hashes) == {"0", "1"} and hashes["0"] == hashes["1"], log[-2000:]
    ck = _load(out / "checkpoint.pt")
    assert train.weights_hash(ck["state_dict"]) == hashes["0"]
    assert len(list(csv.DictReader(open(out / "metrics.csv")))) == 2


# ------------------------------------------------------------------ the seed network, for real

@pytest.mark.slow
def test_seed_network_trains_to_95_percent_and_exports_to_matching_onnx(tmp_path: Path) -> None:
    """The chapter's network on real offline data (digits) through the real CLI, then its
    checkpoint through `--emit onnx --weights` into onnxruntime. One test, so that the one long
    training run happens once even when the suite is spread over several workers."""
    out = tmp_path / "run"
    r = subprocess.run([RESNET_COMPILE, "train", SEED_SPEC, "--dataset", "digits", "--epochs", "10",
                        "--batch-size", "32", "--out", str(out)], capture_output=True, text=True,
                       timeout=1500, cwd=ROOT)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 10
    assert float(rows[-1]["test_acc"]) >= 0.95, rows[-1]
    assert (out / "curves.png").stat().st_size > 10_000

    onnx_path = tmp_path / "seed.onnx"
    assert cli_main([SEED_SPEC, "--emit", "onnx", "--weights", str(out / "checkpoint.pt"),
                     "-o", str(onnx_path)]) == 0
    ds = load_digits()
    x = fit_batch(ds.test_images, 1, (96, 96)).contiguous()
    model = rc.compile(ROOT / SEED_SPEC).build_torch().eval()
    model.load_state_dict(_load(out / "checkpoint.pt")["state_dict"])
    with torch.inference_mode():
        ref = model(x)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    assert torch.equal(ref.argmax(1), got.argmax(1))
    assert float((ref - got).abs().max()) <= 1e-4 * max(1.0, float(ref.abs().max()))
    assert float((got.argmax(1) == ds.test_labels).double().mean()) >= 0.95
