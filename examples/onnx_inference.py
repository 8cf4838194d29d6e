"""Train a small ResNet on scikit-learn's digits, export it to ONNX and classify with onnxruntime.

    python examples/onnx_inference.py [--epochs 5] [--out DIR]

The network (1x16x16 input, two stages) trains for a few epochs on the CPU with
`resnet-compile train`'s recipe. The trained weights go into an ONNX file together with the
preprocessing metadata (input size, resize rule, mean/std) and the class names. onnxruntime then
classifies the digits test split: each 8x8 image is resized to 16x16 by `resnet_compiler.runtime.images`
(numpy, with torch's bilinear arithmetic), so its accuracy equals the one training measured in
torch. `resnet-compile infer MODEL.onnx IMAGE...` does the same for image files.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import yaml

import resnet_compiler as rc
from resnet_compiler.runtime.images import resize
from resnet_compiler.runtime.infer import (
    classify,
    open_session,
    preprocessing_of,
    session_device,
)
from resnet_compiler.train import main as train
from resnet_compiler.train.data import load_digits

SPEC = {
    "name": "digits_resnet",
    "input": {"channels": 1, "height": 16, "width": 16},
    "num_classes": 10,
    "stem": [{"op": "conv", "name": "conv1", "channels": 16, "kernel": 3},
             {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "relu"}],
    "stages": [{"block": "basic", "depth": 1, "channels": 16},
               {"block": "basic", "depth": 1, "channels": 32, "stride": 2}],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--out", help="folder for the run and the ONNX file (default: a temporary one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        spec = out / "digits_resnet.yaml"
        spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
        train([str(spec), "--dataset", "digits", "--epochs", str(args.epochs), "--batch-size",
               "64", "--lr", "0.1", "--momentum", "0.9", "--device", "cpu", "--out",
               str(out / "run"), "--overwrite"])
        with open(out / "run" / "metrics.csv") as f:
            torch_acc = float(list(csv.DictReader(f))[-1]["test_acc"])  # 6 digits

        net = rc.compile(spec)
        model = out / "digits_resnet.onnx"
        data = load_digits(seed=0)  # the split training used (seed 0)
        net.to_onnx(model, weights=out / "run" / "checkpoint.pt", class_names=list(data.classes))
        session = open_session(model)  # "auto": CUDA if it works here, else CPU

    pre = preprocessing_of(session)  # what the file says about its input
    images = resize(data.test_images.numpy(), (pre.height, pre.width), pre.resize)
    result = classify(session, pre.normalize_numpy(images), top_k=3)
    labels = data.test_labels.numpy()
    onnx_acc = float((result.top_indices[:, 0] == labels).mean())
    print(f"{net.name}: {net.total_params:,} parameters; onnxruntime on {session_device(session)}")
    print(f"test accuracy: torch (training run) {torch_acc:.4f}, onnxruntime {onnx_acc:.4f}"
          f" on {len(labels)} digits")
    for i in range(3):
        ranked = ", ".join(f"{data.classes[k]} ({q:.3f})"
                           for k, q in zip(result.top_indices[i], result.top_probs[i], strict=True))
        print(f"  test image {i} (label {labels[i]}): {ranked}")
    if round(torch_acc * len(labels)) != int((result.top_indices[:, 0] == labels).sum()):
        raise SystemExit("onnxruntime's accuracy differs from the training run's")


if __name__ == "__main__":
    main()
