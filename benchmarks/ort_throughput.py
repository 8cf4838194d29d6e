"""onnxruntime CPU throughput of resnet-compiler's resnet50 ONNX vs torch.onnx.export's ONNX of
the same weights (same session options: intra_op_num_threads=2), interleaved runs at batch 8,
plus torch eager on CPU. Run: python benchmarks/ort_throughput.py
"""

from __future__ import annotations

import contextlib
import io
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchvision

import resnet_compiler as rc
from resnet_compiler.runtime.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]
BATCH, THREADS, ROUNDS = 8, 2, 10


def main() -> None:
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    # torchvision's resnet50 with seeded weights and non-trivial BatchNorm statistics (the
    # compiler's resnet50 has the same state_dict keys)
    net = rc.compile(ROOT / "spec" / "resnet50.yaml")
    weights = init_weights(net.graph, seed=0, realistic_bn=True)
    tv = torchvision.models.resnet50().eval()
    tv.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    tmp = Path(tempfile.mkdtemp())
    net.to_onnx(tmp / "ours.onnx", weights=weights)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(tv, (torch.randn(BATCH, 3, 224, 224),), str(tmp / "theirs.onnx"),
                          dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    sessions = {k: ort.InferenceSession(str(tmp / f"{k}.onnx"), so,
                                        providers=["CPUExecutionProvider"])
                for k in ("ours", "theirs")}
    x = np.random.default_rng(0).standard_normal((BATCH, 3, 224, 224), dtype=np.float32)
    xt = torch.from_numpy(x)

    def run(kind: str) -> float:
        t = time.perf_counter()
        if kind == "eager":
            with torch.inference_mode():
                tv(xt)
        else:
            s = sessions[kind]
            s.run(None, {s.get_inputs()[0].name: x})
        return time.perf_counter() - t

    kinds = ("ours", "theirs", "eager")
    for k in kinds:  # warm-up
        run(k)
        run(k)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(ROUNDS):
        order = kinds if i % 2 == 0 else kinds[::-1]
        for k in order:
            times[k].append(run(k))
    ips = {k: BATCH / statistics.median(v) for k, v in times.items()}
    names = {"ours": "onnxruntime, resnet-compiler ONNX", "theirs":
             "onnxruntime, torch.onnx.export ONNX", "eager": "torch eager (fp32, eval)"}
    print(f"resnet50, batch {BATCH}, {THREADS} threads, CPU, median of {ROUNDS} interleaved rounds"
          f" (onnxruntime {ort.__version__}, torch {torch.__version__})")
    print("| runtime | images/s | resnet-compiler ONNX vs this |")
    print("|---|---:|---:|")
    for k in kinds:
        print(f"| {names[k]} | {ips[k]:.1f} | {ips['ours'] / ips[k]:.2f}x |")


if __name__ == "__main__":
    main()
