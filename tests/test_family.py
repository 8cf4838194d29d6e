"""timm's ResNet family by name (spec/timm/): each preset has timm's parameters and state_dict
(names and shapes, timm built on the meta device), and a sample across stems, blocks and
attention computes what timm computes in torch and in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
import timm
import torch
from support import ROOT, realistic_bn, rel_err

import resnet_compiler as rc

FAMILY = sorted(p.stem for p in (ROOT / "spec" / "timm").glob("*.yaml"))


def test_every_family_preset_has_timms_structure() -> None:
    assert len(FAMILY) >= 89
    for name in FAMILY:
        net = rc.compile(name)
        with torch.device("meta"):
            peer = timm.create_model(name)
        want = {k: tuple(v.shape) for k, v in peer.state_dict().items()}
        got = {f"{n}.{k}": tuple(s) for n, d in net.ir.nodes(data=True)
               for k, s in d.get("tensors", {}).items()}
        assert got == want, name
        assert net.total_params == sum(p.numel() for p in peer.parameters()), name
        assert net.spec.peer == f"timm:{name}"


# one of each: tiered stem with basic blocks, wide deep stem, SE-ResNeXt, ECA with the 7x7 stem,
# ResNeSt radix 1, Res2Net-D, SK-ResNet-D, pre-activation basic, blur-pooled deep stem
SAMPLE = ["resnet10t", "resnet50s", "seresnext26t_32x4d", "ecaresnetlight", "resnest50d_1s4x24d",
          "res2net50d", "skresnet50d", "resnetv2_18d", "resnetblur50d"]


@pytest.mark.parametrize("name", SAMPLE)
def test_a_sample_computes_what_timm_computes(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    peer = realistic_bn(timm.create_model(name)).eval()
    net = rc.compile(name)
    model = net.build_torch().eval()
    model.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = peer(x)
        assert rel_err(want, model(x)) <= 1e-5
    path = tmp_path / "m.onnx"
    net.to_onnx(path, weights=peer.state_dict(), dynamic_hw=True)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    assert rel_err(want, got) <= 1e-4
