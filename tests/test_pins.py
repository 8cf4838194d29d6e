"""The emitted code and ONNX of every preset and example, pinned by hash: a change to either must
be deliberate (update the pin in the same commit, and say why).

ONNX files are emitted with the compiler's seeded initialisation, so the pin covers the graph,
the weights layout, the initialisation and the serialization. Regenerate with
`python tests/test_pins.py`.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

import resnet_compiler as rc
from resnet_compiler.emit.onnx import emit_onnx

ROOT = Path(__file__).resolve().parents[1]
PINS = {
    "examples/custom_block.yaml": ('d9bbb8eb5f582c50', 'e4be451e7b5ad082'),
    "examples/preact_wide_cifar.yaml": ('dc8b79b43d036b07', '13d38ec76baba0eb'),
    "examples/seed_resnext.yaml": ('a9f854659e4bb286', 'b163277af34b1d4b'),
    "spec/resnet101.yaml": ('fe0bf83bb024817b', '29479a7f1ef09bdb'),
    "spec/resnet152.yaml": ('83285f250714e5a6', '85b4618fbb5d3393'),
    "spec/resnet18.yaml": ('42cd257a5620b165', 'a4dc485bba7f3824'),
    "spec/resnet18_fashion_mnist.yaml": ('eed1a011b80dad25', '4cd06e5f4c1fa5c5'),
    "spec/resnet20_cifar.yaml": ('f93345558da1d00b', '418e9e270c259ca9'),
    "spec/resnet34.yaml": ('0cd849180da63a94', '9be1344cbacbd74d'),
    "spec/resnet50.yaml": ('e273ce41ea643643', 'c3cb57cbb7d6a131'),
    "spec/resnet50d.yaml": ('0af52fbb10076e05', '6c55c69172682a64'),
    "spec/resnetv2_50.yaml": ('f7f33b17831bd864', '5015646a66b10a81'),
    "spec/resnext101_32x8d.yaml": ('ae7f8013cafb530d', '5bd65524c967f555'),
    "spec/resnext50_32x4d.yaml": ('2e080720bb2219d5', '88d1da737554952b'),
    "spec/seresnet50.yaml": ('8b897744e2a9a592', 'c2f90a905ab61063'),
    "spec/wide_resnet50_2.yaml": ('36b42ade052c1c70', '29ad10391bf2f358'),
}


def _digests(spec: str) -> tuple[str, str]:
    net = rc.compile(ROOT / spec)
    code = hashlib.sha256(net.to_torch_source().encode()).hexdigest()[:16]
    model = hashlib.sha256(emit_onnx(net.graph)).hexdigest()[:16]
    return code, model


def test_every_preset_and_example_is_pinned() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("spec/*.yaml"),
                                                     *ROOT.glob("examples/**/*.yaml")]}
    assert found == set(PINS)


@pytest.mark.parametrize("spec", sorted(PINS))
def test_emitted_code_and_onnx_are_unchanged(spec: str) -> None:
    code, model = _digests(spec)
    assert code == PINS[spec][0], f"{spec}: the generated PyTorch code changed"
    assert model == PINS[spec][1], f"{spec}: the ONNX file changed"


if __name__ == "__main__":  # print fresh pins
    for name in sorted(PINS):
        print(f'    "{name}": {_digests(name)},', file=sys.stdout)
