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
    "examples/custom_block.yaml": ('481437f4b447d12b', '14360a78a98c0177'),
    "examples/preact_wide_cifar.yaml": ('92dd574e2045fa8c', '2310623ca4880e68'),
    "examples/seed_resnext.yaml": ('059f8771e2952531', '196233078b1a240a'),
    "spec/resnet101.yaml": ('653d75bc10d6e428', '5c4b75ee028ec200'),
    "spec/resnet152.yaml": ('f129f01a94330f68', '35c57bbd2b1b6ec3'),
    "spec/resnet18.yaml": ('094d864f10e73341', 'e7d3aa853fd507a1'),
    "spec/resnet18_fashion_mnist.yaml": ('46bd4f1432a84ed7', '765345e100e25a8d'),
    "spec/resnet20_cifar.yaml": ('7defd5766582484e', 'de48600bf7cab7d9'),
    "spec/resnet34.yaml": ('24f8afe357b111ed', '3c99dcb8491a3bb0'),
    "spec/resnet50.yaml": ('413a1207f07dd8f6', '1dce477a1b142ad9'),
    "spec/resnet50d.yaml": ('527b1e88fe5e8517', '139e1afda703dfb2'),
    "spec/resnetv2_50.yaml": ('c05d284761897580', '0ad47884187fca99'),
    "spec/resnext101_32x8d.yaml": ('fa017fafd8649fa2', '3460040ad7e7b25a'),
    "spec/resnext50_32x4d.yaml": ('53e734c2719dd59b', 'f7e56027d300f83a'),
    "spec/seresnet50.yaml": ('94b4a19ca35f9456', '4c1f0f466087fe39'),
    "spec/wide_resnet50_2.yaml": ('c53169a348ceca7b', '8136b373a7f1862d'),
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
