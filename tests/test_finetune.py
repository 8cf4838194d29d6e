"""Fine-tuning with `resnet-compile train`: pretrained weights from torchvision, timm and our own
checkpoints fitted to a spec (first conv adapted, classifier reset), --freeze, --norm-eval, the
optimiser options, augmentation, preprocessing and class names in the checkpoint, curves.png."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
import yaml
from PIL import Image
from support import ROOT, flat_spec, realistic_bn

import resnet_compiler as rc
from resnet_compiler.cli import main as cli_main
from resnet_compiler.errors import UsageError
from resnet_compiler.language.preprocessing import Preprocessing
from resnet_compiler.runtime.finetune import adapt_input_conv, fit_state_dict
from resnet_compiler.runtime.weights import init_weights, load_checkpoint
from resnet_compiler.train import lr_at
from resnet_compiler.train.augment import make_augment
from resnet_compiler.train.checkpoint import read_metadata
from resnet_compiler.train.curves import curves_figure

TINY = {
    "name": "tiny",
    "input": {"channels": 1, "height": 8, "width": 8},
    "num_classes": 10,
    "stem": [{"op": "conv", "name": "conv1", "channels": 8, "kernel": 3},
             {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "relu"}],
    "stages": [{"block": "basic", "depth": 1, "channels": 8},
               {"block": "basic", "depth": 1, "channels": 16, "stride": 2}],
    "head": {"pool": "avg"},
}


def _write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _resnet18_spec(channels: int, classes: int, size: int) -> dict:
    spec = flat_spec(ROOT / "spec/resnet18.yaml")
    spec["input"] = {"channels": channels, "height": size, "width": size}
    spec["num_classes"] = classes
    return spec


def _train(spec: Path, out: Path, *extra: str) -> int:
    return cli_main(["train", str(spec), "--dataset", "digits", "--epochs", "1", "--batch-size", "128",
                     "--out", str(out), *extra])


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return _write_spec(tmp_path / "tiny.yaml", TINY)


@pytest.fixture(scope="module")
def tv18() -> dict[str, torch.Tensor]:
    """torchvision's resnet18 (3 channels, 1000 classes) with realistic BatchNorm statistics."""
    return realistic_bn(torchvision.models.resnet18(weights=None)).state_dict()


# ------------------------------------------------------------------ the fine-tuning scenario

def test_torchvision_weights_fine_tuned_frozen_with_norm_eval(tmp_path: Path, tv18: dict,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """torchvision resnet18 into a 1-channel, 10-class resnet18 at 16x16; everything but the
    classifier frozen, norms in eval mode: conv1 is the channel sum, every frozen float tensor
    (BN running statistics included) is bit-identical, fc moved."""
    spec = _write_spec(tmp_path / "r18.yaml", _resnet18_spec(1, 10, 16))
    torch.save(tv18, tmp_path / "tv18.pt")
    out = tmp_path / "run"
    assert _train(spec, out, "--init-weights", str(tmp_path / "tv18.pt"),
                  "--freeze", "stem,layer1,layer2,layer3,layer4", "--norm-eval") == 0
    log = capsys.readouterr().err
    assert "conv1.weight adapted from 3 to 1 input channels" in log
    assert "classifier fc.weight, fc.bias reset: the checkpoint has 1000 classes, the spec 10" in log
    assert "frozen: stem, layer1, layer2, layer3, layer4" in log and "norm eval:" in log
    sd = _load(out / "model.pth")
    torch.testing.assert_close(sd["conv1.weight"], tv18["conv1.weight"].sum(1, keepdim=True),
                               rtol=1e-6, atol=1e-7)
    frozen = [k for k in tv18 if not k.startswith(("fc.", "conv1.")) and tv18[k].is_floating_point()]
    assert len(frozen) == 99  # every float tensor but conv1 and fc
    assert [k for k in frozen if not torch.equal(sd[k], tv18[k])] == []
    assert sd["fc.weight"].shape == (10, 512)
    torch.manual_seed(0)  # the run's seed: the same initial classifier
    fresh = rc.compile(spec).build_torch().state_dict()
    assert not torch.equal(sd["fc.weight"], fresh["fc.weight"])
    meta = read_metadata(out / "checkpoint.pt")
    assert meta["freeze"] == ["stem", "layer1", "layer2", "layer3", "layer4"] and meta["norm_eval"] is True
    assert meta["init_weights"] == str(tmp_path / "tv18.pt")
    assert any("conv1.weight" in n for n in meta["init_weights_changes"])
    ck = _load(out / "checkpoint.pt")
    trained = {id(p) for g in ck["optimizer"]["param_groups"] for p in g["params"]}
    assert len(trained) == 2  # fc.weight and fc.bias: frozen parameters are not in the optimizer


# ------------------------------------------------------------------ fitting weights to a graph

@pytest.mark.parametrize("channels", [1, 4, 6])
def test_first_conv_adaptation_follows_the_rule(channels: int, tv18: dict) -> None:
    w = tv18["conv1.weight"]
    if channels == 1:
        want = w.sum(1, keepdim=True)
    else:  # timm's adapt_input_conv for 3-channel weights
        want = w.repeat(1, math.ceil(channels / 3), 1, 1)[:, :channels] * (3 / channels)
    got = torch.from_numpy(adapt_input_conv(w.numpy(), channels))
    assert got.shape == (64, channels, 7, 7) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    graph = rc.compile(_resnet18_spec(channels, 1000, 32)).graph
    fitted = fit_state_dict(graph, {k: v.numpy() for k, v in tv18.items()}, init_weights(graph))
    assert fitted.notes == [f"conv1.weight adapted from 3 to {channels} input channels ("
                            + ("summed over input channels)" if channels == 1 else
                               f"repeated along input channels, scaled by 3/{channels})")]
    np.testing.assert_array_equal(fitted.state_dict["conv1.weight"], got.numpy())
    np.testing.assert_array_equal(fitted.state_dict["fc.weight"], tv18["fc.weight"].numpy())


def test_timm_classifier_found_from_the_graph(tmp_path: Path) -> None:
    """timm's ResNetV2 names its stem conv stem.conv and its classifier head.fc (a 1x1 conv):
    both are found from the graph; a safetensors copy of the weights fits the same way."""
    spec = flat_spec(ROOT / "spec/resnetv2_50.yaml")
    spec["input"] = {"channels": 1, "height": 32, "width": 32}
    spec["num_classes"] = 7
    graph = rc.compile(spec).graph
    from safetensors.torch import save_file
    sd = timm.create_model("resnetv2_50", pretrained=False).state_dict()
    save_file(sd, tmp_path / "v2.safetensors")
    fresh = init_weights(graph)
    fitted = fit_state_dict(graph, load_checkpoint(tmp_path / "v2.safetensors"), fresh)
    assert fitted.notes[0].startswith("stem.conv.weight adapted from 3 to 1 input channels")
    assert fitted.notes[1] == ("classifier head.fc.weight, head.fc.bias reset: the checkpoint has 1000 "
                               "classes, the spec 7")
    assert fitted.state_dict["head.fc.weight"] is fresh["head.fc.weight"]
    np.testing.assert_array_equal(fitted.state_dict["stages.3.blocks.2.conv3.weight"],
                                  sd["stages.3.blocks.2.conv3.weight"].numpy())


def test_other_mismatches_are_refused_in_one_line(tmp_path: Path, tv18: dict,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec = _resnet18_spec(3, 10, 16)
    spec["stages"][0]["channels"] = 32  # layer1 no longer fits the checkpoint
    path = _write_spec(tmp_path / "narrow.yaml", spec)
    torch.save(tv18, tmp_path / "tv18.pt")
    out = tmp_path / "run"
    assert _train(path, out, "--init-weights", str(tmp_path / "tv18.pt")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "the weights do not fit the network" in err and "mis-shaped: layer1.0.conv1.weight" in err
    assert not out.exists()
    graph = rc.compile(_resnet18_spec(3, 10, 16)).graph
    wrong_in = {k: v.numpy() for k, v in tv18.items()}
    wrong_in["fc.weight"] = np.zeros((1000, 256), np.float32)  # not just another class count
    with pytest.raises(UsageError, match=r"mis-shaped: fc.weight \(checkpoint 1000x256, network 10x512\)"):
        fit_state_dict(graph, wrong_in, init_weights(graph))


def test_own_checkpoint_as_init_weights(tiny: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A run's checkpoint.pt starts a 3-channel run (first conv adapted, frozen layer1 kept), and
    fits a 5-class network (classifier reset)."""
    assert _train(tiny, tmp_path / "a") == 0
    capsys.readouterr()
    rgb = {**TINY, "input": {"channels": 3, "height": 12, "width": 12}}
    bigger = _write_spec(tmp_path / "bigger.yaml", rgb)
    assert _train(bigger, tmp_path / "b", "--init-weights", str(tmp_path / "a" / "checkpoint.pt"),
                  "--freeze", "layer1") == 0
    log = capsys.readouterr().err
    assert ("conv1.weight adapted from 1 to 3 input channels (repeated along input channels, scaled by "
            "1/3)") in log
    a, b = _load(tmp_path / "a" / "model.pth"), _load(tmp_path / "b" / "model.pth")
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("layer1.") and a[k].is_floating_point())
    onnx_path = tmp_path / "b.onnx"  # a fine-tuned checkpoint exports like any other
    assert cli_main([str(bigger), "--emit", "onnx", "--weights", str(tmp_path / "b" / "checkpoint.pt"),
                     "-o", str(onnx_path)]) == 0 and onnx_path.stat().st_size > 0
    graph = rc.compile({**TINY, "num_classes": 5}).graph
    fitted = fit_state_dict(graph, load_checkpoint(tmp_path / "a" / "checkpoint.pt"), init_weights(graph))
    assert fitted.notes == ["classifier fc.weight, fc.bias reset: the checkpoint has 10 classes, the spec 5"]


# ------------------------------------------------------------------ --freeze and --norm-eval

def test_freeze_and_init_weights_usage_errors(tiny: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(tiny, tmp_path / "o", "--freeze", "stem,layr1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--freeze layr1: no such part of the network; did you mean 'layer1'?" in err
    assert _train(tiny, tmp_path / "o", "--init-weights", str(tmp_path / "none.pt")) == 2
    assert f"--init-weights {tmp_path / 'none.pt'}: no such file" in capsys.readouterr().err
    torch.save({"conv1.weight": Path("x")}, tmp_path / "object.pt")  # an object, not a tensor
    assert _train(tiny, tmp_path / "o", "--init-weights", str(tmp_path / "object.pt")) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to unpickle it" in err and len(err.splitlines()) == 1
    assert _train(tiny, tmp_path / "o", "--freeze", "stem,") == 2
    assert "empty name" in capsys.readouterr().err
    names = "stem,layer1,layer2,fc"
    assert _train(tiny, tmp_path / "o", "--freeze", names) == 2
    assert capsys.readouterr().err.strip() == "error: every parameter is frozen: nothing left to train"


def test_norm_eval_keeps_running_statistics(tiny: Path, tmp_path: Path) -> None:
    assert _train(tiny, tmp_path / "eval", "--norm-eval") == 0
    assert _train(tiny, tmp_path / "train") == 0
    fixed, moving = _load(tmp_path / "eval" / "model.pth"), _load(tmp_path / "train" / "model.pth")
    stats = [k for k in fixed if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 12
    for k in stats:  # a fresh BatchNorm: mean 0, variance 1
        fresh = torch.zeros_like(fixed[k]) if k.endswith("mean") else torch.ones_like(fixed[k])
        assert torch.equal(fixed[k], fresh)
        assert not torch.equal(moving[k], fixed[k])
    assert not torch.equal(fixed["layer1.0.conv1.weight"], moving["layer1.0.conv1.weight"])  # it trained


# ------------------------------------------------------------------ optimiser, augmentation, data

def test_adamw_warmup_smoothing_augment_and_preprocessing(tmp_path: Path) -> None:
    spec = {**TINY, "input": {"channels": 1, "height": 12, "width": 12, "mean": [0.2], "std": [0.3],
                              "resize": "bicubic"}}
    path = _write_spec(tmp_path / "s.yaml", spec)
    out = tmp_path / "run"
    assert _train(path, out, "--epochs", "2", "--optimizer", "adamw", "--warmup-epochs", "1",
                  "--label-smoothing", "0.1", "--augment", "random-resized-crop") == 0
    ck = _load(out / "checkpoint.pt")
    assert (ck["args"]["optimizer"], ck["args"]["lr"], ck["args"]["weight_decay"]) == ("adamw", 1e-3, 0.05)
    assert "exp_avg_sq" in next(iter(ck["optimizer"]["state"].values()))
    assert ck["scheduler"]["warmup_steps"] == ck["scheduler"]["steps_per_epoch"] == 12
    assert ck["metrics"][0]["lr"] == pytest.approx(1e-3)  # the last warmup step reaches the peak
    assert ck["metrics"][1]["lr"] < 1e-4  # then cosine to zero
    assert ck["metrics"][1]["train_loss"] < ck["metrics"][0]["train_loss"]
    meta = read_metadata(out / "model.safetensors")
    from safetensors import safe_open
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:  # plain text for other readers
        assert f.metadata()["preprocessing"] == meta["preprocessing"]
    assert meta["preprocessing"] == Preprocessing.from_spec(rc.compile(path).spec).to_json()
    assert Preprocessing.from_json(meta["preprocessing"]).resize == "bicubic"
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert read_metadata(out / "checkpoint.pt")["preprocessing"] == meta["preprocessing"]


def test_option_values_are_checked(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra, message in ((("--optimizer", "adam"), "invalid choice"),
                           (("--label-smoothing", "1"), "must be below 1"),
                           (("--warmup-epochs", "1"), "--warmup-epochs 1 must be less than --epochs 1"),
                           (("--optimizer", "adamw", "--momentum", "0.9"), "--momentum applies to"),
                           (("--augment", "flip"), "invalid choice")):
        assert _train(tiny, tmp_path / "o", *extra) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert _train(tiny, tmp_path / "o", "--stop-after", "1", "--epochs", "2") == 0
    assert _train(tiny, tmp_path / "o", "--epochs", "2", "--resume", "--optimizer", "adamw") == 2
    assert "was trained with optimizer 'sgd', not 'adamw'" in capsys.readouterr().err


def test_warmup_schedule() -> None:
    assert [lr_at("constant", 1.0, s, 10, warmup=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_at("cosine", 1.0, 4, 10, warmup=4) == pytest.approx(1.0)
    assert lr_at("cosine", 1.0, 7, 10, warmup=4) == pytest.approx(0.5)
    assert lr_at("cosine", 1.0, 3, 10) == lr_at("cosine", 1.0, 3, 10, warmup=0)


@pytest.mark.parametrize("name", ["crop-flip", "random-resized-crop"])
def test_augmentation_draws_per_image(name: str) -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16).expand(16, 1, 16, 16).contiguous()  # one image, sixteen times
    y = make_augment(name, (16, 16))(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert len({y[i].numpy().tobytes() for i in range(16)}) > 4  # each image its own crop
    assert make_augment("none", (16, 16)) is None


def test_folder_class_names_and_resize_recorded(tiny: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (5, 5), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / c / f"{i}.png")
    nearest = _write_spec(tmp_path / "n.yaml", {**TINY, "input": {**TINY["input"], "resize": "nearest"}})
    out = tmp_path / "run"
    assert cli_main(["train", str(nearest), "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                     "--epochs", "1", "--batch-size", "4", "--out", str(out)]) == 0
    assert read_metadata(out / "checkpoint.pt")["class_names"] == ["cat", "dog"]
    assert read_metadata(out / "model.safetensors")["class_names"] == ["cat", "dog"]
    from resnet_compiler.train.data import load_folder
    ds = load_folder(tmp_path / "data", 1, (8, 8), resize="nearest")
    raw = np.asarray(Image.open(tmp_path / "data" / "cat" / "0.png"), dtype=np.float32) / 255
    want = torch.nn.functional.interpolate(torch.from_numpy(raw)[None, None], size=(8, 8), mode="nearest")
    assert any(torch.equal(img, want[0]) for img in torch.cat([ds.train_images, ds.test_images]))


# ------------------------------------------------------------------ curves.png

def test_curves_have_a_loss_and_an_accuracy_panel() -> None:
    rows = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 * e, "test_acc": 0.25 * e}
            for e in (1, 2, 3)]
    fig = curves_figure(rows, "tiny on digits")
    loss, acc = fig.axes
    assert loss.get_ylabel() == "cross-entropy loss" and acc.get_ylabel() == "accuracy"
    assert loss.get_xlabel() == acc.get_xlabel() == "epoch"
    assert all(float(t).is_integer() for t in acc.get_xticks())
    assert [line.get_marker() for line in acc.get_lines()] == ["o", "s"]
    assert [t.get_text() for t in acc.get_legend().get_texts()] == ["train", "test"]
