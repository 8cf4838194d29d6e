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
    "examples/custom_block.yaml": ('d2c60dfd58d8d473', '3c6a8c6ef4e96856'),
    "examples/preact_wide_cifar.yaml": ('ef758d51110e71a6', 'b37bede5fd0002a1'),
    "examples/seed_resnext.yaml": ('a2d766d091e72820', '3abcc545952a6986'),
    "spec/resnet101.yaml": ('99cba2f699668f5f', '60e24ca438f990d5'),
    "spec/resnet152.yaml": ('c792cff356a29ac9', 'd1e2c212740bbdd0'),
    "spec/resnet18.yaml": ('c8b0474fa52869f2', '1df9381d21e7785f'),
    "spec/resnet18_fashion_mnist.yaml": ('8c8899184509d5d9', 'c417098ff50fb73a'),
    "spec/resnet20_cifar.yaml": ('8816c25a7b332976', '008f48e21e288ceb'),
    "spec/resnet34.yaml": ('7683fdc752ee1ea0', 'ba9c4f5bbf83fb61'),
    "spec/resnet50.yaml": ('8e00051b09de69d1', 'e2d2ab2a34767ba3'),
    "spec/resnet50d.yaml": ('a4c29b03c2b1c69a', '77934d398c2af7b5'),
    "spec/resnetv2_50.yaml": ('eaab2a51faafde33', 'b08866f2075134ed'),
    "spec/resnext101_32x8d.yaml": ('96d5f8510786829e', 'e0dbd7eef5e51644'),
    "spec/resnext50_32x4d.yaml": ('9e64c0eb09756bea', '260b949a9acacdb9'),
    "spec/seresnet50.yaml": ('5682b6dbbedf156b', '33992995f66b9fa6'),
    "spec/wide_resnet50_2.yaml": ('dd4eb2d8f60f247f', '26c9800c02a950c7'),
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
