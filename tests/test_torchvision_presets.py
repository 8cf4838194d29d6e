"""torchvision's ResNets and RegNets as `torchvision/<name>` presets: torchvision's state_dict loads
strict (RegNets named stem.0, trunk_output.block1.block1-0.f.a.0, fc: `regnet: {names:
torchvision}`), with torchvision's float32 widths, and the outputs agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from support import assert_computes_like, on_meta, realistic_bn

import resnet_compiler as rc

NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
         "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
         *(f"regnet_x_{s}" for s in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")),
         *(f"regnet_y_{s}" for s in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf",
                                     "128gf"))]


def test_every_torchvision_model_is_listed_and_has_torchvisions_structure() -> None:
    assert rc.list_models("torchvision/*") == sorted(f"torchvision/{n}" for n in NAMES)
    for name in NAMES:
        net = rc.compile(f"torchvision/{name}")
        assert net.spec.peer == f"torchvision:{name}"
        peer = on_meta(lambda n=name: getattr(torchvision.models, n)(weights=None))
        want = {k: tuple(v.shape) for k, v in peer.state_dict().items()}
        got = {f"{n}.{k}": tuple(s) for n, d in net.ir.nodes(data=True)
               for k, s in d.get("tensors", {}).items()}
        assert got == want, name
        assert net.total_params == sum(p.numel() for p in peer.parameters()), name


@pytest.mark.parametrize("name", ["regnet_x_400mf", "regnet_y_400mf", "resnet18"])
def test_torchvision_presets_compute_what_torchvision_computes(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    peer = realistic_bn(getattr(torchvision.models, name)(weights=None)).eval()
    assert_computes_like(rc.compile(f"torchvision/{name}"), peer, tmp_path)


def test_torchvision_block_names_reach_the_generated_code(tmp_path: Path) -> None:
    """`block1-0` is no Python name: the generated file keys its blocks by string, stays
    ruff-clean, and its module loads torchvision's weights."""
    out = tmp_path / "regnet.py"
    r = subprocess.run([sys.executable, "-m", "resnet_compiler", "torchvision/regnet_y_400mf",
                        "--emit", "torch", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert '"block1-0",' in text and '"block2-1",' in text and "OrderedDict(" in text
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(out)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    space: dict = {}
    exec(compile(text, str(out), "exec"), space)  # the file this test just generated
    model = space["RegnetY400mf"]()
    model.load_state_dict(torchvision.models.regnet_y_400mf().state_dict(), strict=True)


def test_names_torchvision_refuses_what_torchvisions_regnet_lacks(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("extends: torchvision/regnet_x_400mf\nregnet: {preact: true}\n")
    r = subprocess.run([sys.executable, "-m", "resnet_compiler", str(spec), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "torchvision's RegNet has no preact" in r.stderr
