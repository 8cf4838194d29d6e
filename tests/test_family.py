"""timm's ResNet family by name (spec/timm/): each preset has timm's parameters and state_dict
(names and shapes, timm built on the meta device), and a sample across stems, blocks and
attention computes what timm computes in torch and in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from support import (
    ROOT,
    assert_computes_like,
    assert_timm_structure,
    realistic_bn,
    rel_err,
)

import resnet_compiler as rc

FAMILY = sorted(p.stem for p in (ROOT / "spec" / "timm").glob("*.yaml")
                if not p.name.startswith("_"))  # bases and libraries are not presets


def test_every_family_preset_has_timms_structure() -> None:
    assert len(FAMILY) >= 94
    for name in FAMILY:
        net = assert_timm_structure(name)
        assert net.spec.peer == f"timm:{name}"


# one of each: tiered stem with basic blocks, wide deep stem, SE-ResNeXt, ECA with the 7x7 stem,
# ResNeSt radix 1, Res2Net-D, SK-ResNet-D, pre-activation basic, blur-pooled deep stem, pruned
SAMPLE = ["resnet10t", "resnet50s", "seresnext26t_32x4d", "ecaresnetlight", "resnest50d_1s4x24d",
          "res2net50d", "skresnet50d", "resnetv2_18d", "resnetblur50d", "ecaresnet50d_pruned"]


@pytest.mark.parametrize("name", SAMPLE)
def test_a_sample_computes_what_timm_computes(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    peer = realistic_bn(timm.create_model(name)).eval()
    net = rc.compile(name)
    assert_computes_like(net, peer, tmp_path)


@pytest.mark.parametrize("name", ["resnetv2_50d_frn", "resnetv2_50d_evos"])
def test_the_batch_free_norms_compute_what_timm_computes(tmp_path: Path, name: str) -> None:
    """FilterResponseNormTlu2d and EvoNorm2dS0 start at ones and zeros in timm: draw every one
    of their tensors (weight, bias, tau or v) first, so one swapped or ignored shows."""
    torch.manual_seed(0)
    peer = timm.create_model(name).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, p in peer.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2
                        + (0.0 if key.endswith(("bias", "tau")) else 1.0))
    net = rc.compile(name)
    assert_computes_like(net, peer, tmp_path)


def test_evonorm_groups_must_divide_the_channels() -> None:
    spec = {"name": "e", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 2,
            "stem": [{"op": "conv", "name": "conv1", "channels": 12, "kernel": 3},
                     {"op": "evonorm_s0", "name": "norm", "groups": 5}],
            "stages": [{"block": "basic", "depth": 1, "channels": 12}]}
    with pytest.raises(rc.SpecError, match=r"groups=5 must divide the channels \(12\)"):
        rc.compile(spec)


def test_std_conv_standardises_as_timms_stdconv2d() -> None:
    """BiT's weight-standardised convs: the emitted StdConv2d gives timm's outputs exactly."""
    peer = timm.create_model("resnetv2_50x1_bit").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in peer.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    model = rc.compile("resnetv2_50x1_bit").build_torch().eval()
    model.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        assert rel_err(peer(x), model(x)) <= 1e-7


def test_every_generated_module_builds_on_the_meta_device() -> None:
    for name in ("ecaresnet50d", "ecaresnetlight", "resnetv2_50d_evos", "regnety_004"):
        net = rc.compile(name)
        with torch.device("meta"):
            model = net.build_torch()
        assert all(p.is_meta for p in model.parameters())
        assert sum(p.numel() for p in model.parameters()) == net.total_params


@pytest.mark.parametrize(("aa", "peer_name"), [("blur", "resnetblur50"), ("avg", "resnetaa50")])
def test_defaults_aa_reaches_the_stem_as_timms_aa_layer(aa: str, peer_name: str) -> None:
    peer = realistic_bn(timm.create_model(peer_name)).eval()
    net = rc.compile("resnet50", overrides={"defaults.aa": aa})
    model = net.build_torch().eval()
    model.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel_err(peer(x), model(x)) <= 1e-5
    assert ("maxpool.1" in net.ir.nodes) == (aa == "blur")


def test_senet154_has_timms_structure() -> None:
    """Half-width first convs (block_reduce_first=2), a 64-64-128 deep stem and 3x3 shortcut
    convs; too large to run beside the suite, so by structure (the zoo marker runs it)."""
    net = assert_timm_structure("senet154")
    assert net.ir.nodes["layer1.0.conv1"]["shape"][0] == 128
    assert net.ir.nodes["layer2.0.downsample.0"]["kernel"] == 3
