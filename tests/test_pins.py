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
    "spec/resnet101.yaml": ("7d8c6c7fb8fe4578", "ec71ef1dd032857d"),
    "spec/resnet152.yaml": ("31dde519eeed2e86", "a399d7476ff5db5f"),
    "spec/resnet18.yaml": ("ff464194968d6c00", "499fc714557573fa"),
    "spec/resnet18_fashion_mnist.yaml": ("6a0cd1f6d699cd4f", "b9f89db105d76a3e"),
    "spec/resnet20_cifar.yaml": ("13c05a5cfa353fb0", "db92d34a20f04602"),
    "spec/resnet34.yaml": ("29c559650a8214e3", "3f3d55a2b0d4e9a6"),
    "spec/resnet50.yaml": ("8ecb0f287c31af31", "08bdf1c36a69f33e"),
    "spec/resnet50d.yaml": ("375fde854e09aa0c", "c1eb2998dc89e238"),
    "spec/resnetv2_50.yaml": ("b7ced9c125c85a78", "6582e947f456688d"),
    "spec/resnext101_32x8d.yaml": ("b161d7c9afb6beb2", "dfff3c3d41c01e8b"),
    "spec/resnext50_32x4d.yaml": ("e23179f35f1895ae", "688c4bec1549ec58"),
    "spec/seresnet50.yaml": ("d35c92bfd711dd53", "0b65342c56d8c0b0"),
    "spec/wide_resnet50_2.yaml": ("9e181c32948389d4", "850f0f3b03e9c326"),
    "examples/custom_block.yaml": ("962af3e451228691", "6d028d61a6b4a5e8"),
    "examples/preact_wide_cifar.yaml": ("ca305e00362cc837", "8907d4dabd786b93"),
    "examples/seed_resnext.yaml": ("b6461d55f345ef64", "8308f0bda40cea6e"),
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
