"""spec/zoo/: each preset builds its peer's architecture exactly. The peer (timm or torchvision)
gets non-trivial norm parameters and statistics; its state_dict loads strict into the compiled
network; outputs agree in torch (relative error <= 1e-5) and in onnxruntime (<= 1e-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
import torchvision
from support import ROOT
from torchvision.ops.misc import FrozenBatchNorm2d

import resnet_compiler as rc

SIZE = 64
PEERS = {
    "resnet50_gn": lambda: timm.create_model("resnet50_gn"),
    "resnet50_silu": lambda: timm.create_model("resnet50", act_layer="silu"),
    "resnet50_dp": lambda: timm.create_model("resnet50", drop_path_rate=0.1),
    "resnetaa50d": lambda: timm.create_model("resnetaa50d"),
    "resnetblur50": lambda: timm.create_model("resnetblur50"),
    "ecaresnet50d": lambda: timm.create_model("ecaresnet50d"),
    "seresnet152d": lambda: timm.create_model("seresnet152d"),
    "resnetrs101": lambda: timm.create_model("resnetrs101"),
    "resnetv2_50d_gn": lambda: timm.create_model("resnetv2_50d_gn"),
    "resnetv2_50x1_bit": lambda: timm.create_model("resnetv2_50x1_bit"),
    "resnet26d_os16": lambda: timm.create_model("resnet26d", output_stride=16),
    # multi-path blocks
    "skresnet18": lambda: timm.create_model("skresnet18"),
    "skresnext50_32x4d": lambda: timm.create_model("skresnext50_32x4d"),
    "res2net50_26w_4s": lambda: timm.create_model("res2net50_26w_4s"),
    "res2next50": lambda: timm.create_model("res2next50"),
    "resnest14d": lambda: timm.create_model("resnest14d"),
    "resnest50d_4s2x40d": lambda: timm.create_model("resnest50d_4s2x40d"),
    "resnet50_cbam": lambda: timm.create_model("resnet50", block_args=dict(attn_layer="cbam")),
    # one block each for every radix, scale and width: the library's modules and loops
    "skresnet34": lambda: timm.create_model("skresnet34"),
    "resnest50d": lambda: timm.create_model("resnest50d"),
    "res2net50_14w_8s": lambda: timm.create_model("res2net50_14w_8s"),
    "tv_resnet101_os16": lambda: torchvision.models.resnet101(
        replace_stride_with_dilation=[False, False, True]),
    "tv_resnet50_frozenbn": lambda: torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d),
}


def _calibrate(peer: torch.nn.Module) -> torch.nn.Module:
    """Random affine parameters for every norm; running statistics from a few batches."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in peer.modules():
            weight = getattr(m, "weight", None)
            norm = isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm,
                                  FrozenBatchNorm2d))
            if not norm or weight is None:
                continue
            weight.copy_(torch.rand(weight.shape, generator=g) * 0.8 + 0.2)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, FrozenBatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
        peer.train()
        for _ in range(2):
            peer(torch.randn(2, 3, SIZE, SIZE, generator=g))
    return peer.eval()


def test_every_zoo_preset_has_a_peer() -> None:
    presets = {p.stem for p in (ROOT / "spec" / "zoo").glob("*.yaml") if not p.name.startswith("_")}
    assert presets == set(PEERS)


@pytest.mark.parametrize("name", sorted(PEERS))
def test_zoo_preset_equals_its_peer(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    peer = PEERS[name]()
    net = rc.compile(ROOT / "spec" / "zoo" / f"{name}.yaml")
    assert net.total_params == sum(p.numel() for p in peer.parameters())
    _calibrate(peer)
    model = net.build_torch().eval()
    model.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = peer(x), model(x)
    assert float((want - got).abs().max() / want.abs().max()) <= 1e-5
    path = tmp_path / "m.onnx"
    net.to_onnx(path, weights=peer.state_dict())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shaped = torch.randn(1, *net.input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = peer(shaped).numpy()
    out = session.run(None, {"input": shaped.numpy()})[0]
    assert float(np.abs(out - ref).max() / max(1.0, np.abs(ref).max())) <= 1e-4
