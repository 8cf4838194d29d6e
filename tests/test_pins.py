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
    "examples/custom_block.yaml": ('5bc3ba22ff420b1c', 'f53688f22eb1f274'),
    "examples/reuse/resnet101d.yaml": ('c66350121ab7bb8d', 'ac7a9358a69a7ad5'),
    "examples/reuse/resnet101d_silu_c10.yaml": ('e15d051a495d913e', '366eccba876d063f'),
    "examples/preact_wide_cifar.yaml": ('b3bae2b02bf757dd', '3aa1228460867383'),
    "examples/scse_attention.yaml": ('787d70e7e9511d55', 'ae22ce2d156d5e25'),
    "examples/seed_resnext.yaml": ('2ffdb5e54f9fda38', 'a20e7549e33c8b35'),
    "spec/resnet101.yaml": ('9ec2d42713081c36', '3b7e56ceb68f5bc1'),
    "spec/resnet152.yaml": ('d832589352ca1c95', '71eb7a5979beef1e'),
    "spec/resnet18.yaml": ('72b10a38812a5684', 'c8bb39380cdd6079'),
    "spec/resnet18_fashion_mnist.yaml": ('12734a8dca8b9ec3', '3fb3d81bb134fd89'),
    "spec/resnet20_cifar.yaml": ('15c8190c5bac79fb', 'f8ece965a7af5dfb'),
    "spec/resnet34.yaml": ('91138a383c6eb1ea', '71aa5c5422073729'),
    "spec/resnet50.yaml": ('980c3b98abd55d3a', 'b4150e6f6104e52d'),
    "spec/resnet50d.yaml": ('e6ac9778ae3df977', 'ded57610e9afa89f'),
    "spec/resnetv2_50.yaml": ('07ea8e49b143c58a', 'db5ed87733cb57f4'),
    "spec/resnext101_32x8d.yaml": ('4ba1c7964e7b7f2e', '7a4afdd425ed3e36'),
    "spec/resnext50_32x4d.yaml": ('a9aa310b67c6df21', '3c9c8e3ff64577b2'),
    "spec/seresnet50.yaml": ('f12c709a4f66e246', 'e21a98d0e5536816'),
    "spec/wide_resnet50_2.yaml": ('68f5f7e347681358', '03a51546e5afd3e8'),
}


def _digests(spec: str) -> tuple[str, str]:
    net = rc.compile(ROOT / spec)
    code = hashlib.sha256(net.to_torch_source().encode()).hexdigest()[:16]
    model = hashlib.sha256(emit_onnx(net.graph)).hexdigest()[:16]
    return code, model


def test_every_preset_and_example_is_pinned() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("spec/*.yaml"),
                                                     *ROOT.glob("examples/**/*.yaml")]
             if p.parent.name != "spaces"}  # design spaces: sample them, they are not networks
    assert found == set(PINS)


@pytest.mark.parametrize("spec", sorted(PINS))
def test_emitted_code_and_onnx_are_unchanged(spec: str) -> None:
    code, model = _digests(spec)
    assert code == PINS[spec][0], f"{spec}: the generated PyTorch code changed"
    assert model == PINS[spec][1], f"{spec}: the ONNX file changed"


if __name__ == "__main__":  # print fresh pins
    for name in sorted(PINS):
        print(f'    "{name}": {_digests(name)},', file=sys.stdout)
