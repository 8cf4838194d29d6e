"""Export a bundled spec to ONNX and classify a batch with onnxruntime.

    python examples/onnx_inference.py [SPEC] [--weights CKPT]

Without weights the network gets a seeded initialisation with realistic BatchNorm statistics, so
the "predictions" are arbitrary but the whole path (spec -> ONNX -> onnxruntime) is exercised.
onnxruntime runs on CUDA when it is present and works, otherwise on the CPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import resnet_compiler as rc
from resnet_compiler.infer import classify, open_session, session_device
from resnet_compiler.weights import init_weights

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", default=str(HERE.parent / "spec" / "resnet20_cifar.yaml"))
    p.add_argument("--weights", help="state_dict checkpoint (.pt or .safetensors)")
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()

    net = rc.compile(args.spec)
    weights = args.weights or init_weights(net.graph, realistic_bn=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{net.name}.onnx"
        net.to_onnx(path, weights=weights)
        print(f"{net.name}: {net.total_params:,} parameters, ONNX file {path.stat().st_size:,} bytes")
        session = open_session(path)  # "auto": CUDA if it works here, else CPU

    c, h, w = net.input_shape
    images = np.random.default_rng(0).standard_normal((args.batch, c, h, w), dtype=np.float32)
    result = classify(session, images, top_k=3)
    print(f"onnxruntime on {session_device(session)}; top-3 classes per image:")
    for i, (idx, prob) in enumerate(zip(result.top_indices, result.top_probs, strict=True)):
        print(f"  image {i}: " + ", ".join(f"class {k} ({q:.3f})" for k, q in zip(idx, prob,
                                                                                  strict=True)))


if __name__ == "__main__":
    main()
