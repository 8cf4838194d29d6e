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
    "examples/custom_block.yaml": ('481437f4b447d12b', '4412f5dff95efb61'),
    "examples/preact_wide_cifar.yaml": ('92dd574e2045fa8c', 'bdb56ad7033db72b'),
    "examples/seed_resnext.yaml": ('059f8771e2952531', 'e1fe17de28afc1a5'),
    "spec/resnet101.yaml": ('653d75bc10d6e428', 'ec312186acfa4271'),
    "spec/resnet152.yaml": ('f129f01a94330f68', '8452d92d8154c2ac'),
    "spec/resnet18.yaml": ('094d864f10e73341', '51dabb41bab11784'),
    "spec/resnet18_fashion_mnist.yaml": ('46bd4f1432a84ed7', 'd0de9f04387b6cf8'),
    "spec/resnet20_cifar.yaml": ('7defd5766582484e', '9f8290b30633713a'),
    "spec/resnet34.yaml": ('24f8afe357b111ed', 'c457e67670f49b3d'),
    "spec/resnet50.yaml": ('413a1207f07dd8f6', 'd0aaebee75a4d924'),
    "spec/resnet50d.yaml": ('527b1e88fe5e8517', '680cdb0a19dbafb7'),
    "spec/resnetv2_50.yaml": ('c05d284761897580', 'f8877265eb5ebfed'),
    "spec/resnext101_32x8d.yaml": ('fa017fafd8649fa2', 'b8a4c4d5292aeb09'),
    "spec/resnext50_32x4d.yaml": ('53e734c2719dd59b', '4fc57ffb110acdfc'),
    "spec/seresnet50.yaml": ('94b4a19ca35f9456', '5bfe4b076ec1181e'),
    "spec/wide_resnet50_2.yaml": ('c53169a348ceca7b', 'db6e0ee0e49fd40c'),
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
