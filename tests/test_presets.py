"""The presets against the models they are named after: torchvision's and timm's."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from support import ROOT, TIMM, TORCHVISION, module_shapes, realistic_bn, rel_err

import resnet_compiler as rc


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_preset_is_torchvisions_network(name: str) -> None:
    params, gmacs = TORCHVISION[name]
    net = rc.compile(ROOT / "spec" / f"{name}.yaml")
    assert net.total_params == params
    assert abs(net.total_macs / 1e9 - gmacs) / gmacs < 0.01

    torch.manual_seed(0)
    reference = realistic_bn(getattr(torchvision.models, name)()).eval()
    ours = net.build_torch().eval()
    assert sum(p.numel() for p in ours.parameters()) == params
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(reference.state_dict())

    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert rel_err(reference(x), ours(x)) <= 1e-5

    shapes = module_shapes(ours, x[:1])
    module_nodes = {n for n, d in net.graph.nodes(data=True) if d["op"] not in ("input", "add")}
    assert module_nodes <= set(shapes), sorted(module_nodes - set(shapes))[:5]
    for node in module_nodes:
        assert tuple(net.graph.nodes[node]["shape"]) == shapes[node], node


@pytest.mark.parametrize("name", TIMM)
def test_timm_preset_parameter_count(name: str) -> None:
    reference = timm.create_model(name, pretrained=False)
    net = rc.compile(ROOT / "spec" / f"{name}.yaml")
    assert net.total_params == sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in net.build_torch().parameters()) == net.total_params


@pytest.mark.parametrize("name", ["seresnet50", "resnet50d", "resnetv2_50"])
def test_timm_preset_loads_timms_weights_and_computes_the_same(name: str) -> None:
    torch.manual_seed(0)
    reference = realistic_bn(timm.create_model(name, pretrained=False)).eval()
    ours = rc.compile(ROOT / "spec" / f"{name}.yaml").build_torch().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert rel_err(reference(x), ours(x)) <= 1e-5


def test_the_chapters_network_from_its_spec() -> None:
    """The chapter's ResNet-18 for 96x96 Fashion-MNIST: per-stage shapes and its exact function."""
    net = rc.compile(ROOT / "spec" / "resnet18_fashion_mnist.yaml")
    g = net.graph
    assert g.nodes["maxpool"]["shape"] == (64, 24, 24)
    stage_out = [g.nodes[f"layer{i}.1.act2"]["shape"] for i in range(1, 5)]
    assert stage_out == [(64, 24, 24), (128, 12, 12), (256, 6, 6), (512, 3, 3)]
    assert g.nodes["fc"]["shape"] == (10,)

    chapter = _chapter_resnet18()
    chapter(torch.zeros(1, 1, 96, 96))  # materialise the lazy modules
    realistic_bn(chapter).eval()
    ours = net.build_torch().eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in chapter.parameters())
    ours.load_state_dict(_chapter_to_ours(chapter.state_dict()), strict=True)
    x = torch.randn(4, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert rel_err(chapter(x), ours(x)) <= 1e-5


class _ChapterResidual(torch.nn.Module):
    """The chapter's Residual block, as described in its text."""

    def __init__(self, channels: int, use_1x1conv: bool = False, strides: int = 1):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.LazyConv2d(channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.LazyConv2d(channels, kernel_size=3, padding=1)
        self.conv3 = nn.LazyConv2d(channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1, self.bn2 = nn.LazyBatchNorm2d(), nn.LazyBatchNorm2d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (self.conv3(x) if self.conv3 is not None else x))


def _chapter_resnet18() -> torch.nn.Module:
    nn = torch.nn
    layers = [nn.Sequential(nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
                            nn.LazyBatchNorm2d(), nn.ReLU(),
                            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]
    for i, channels in enumerate((64, 128, 256, 512)):
        first = i == 0
        layers.append(nn.Sequential(_ChapterResidual(channels, not first, 1 if first else 2),
                                    _ChapterResidual(channels)))
    layers.append(nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.LazyLinear(10)))
    return nn.Sequential(*layers)


def _chapter_to_ours(sd: dict) -> dict:
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "0":
            out[{"0": "conv1", "1": "bn1"}[parts[1]] + "." + parts[2]] = value
        elif parts[0] == "5":
            out["fc." + parts[2]] = value
        else:
            name = {"conv3": "downsample.0"}.get(parts[2], parts[2])
            out[f"layer{parts[0]}.{parts[1]}.{name}.{'.'.join(parts[3:])}"] = value
    return out
