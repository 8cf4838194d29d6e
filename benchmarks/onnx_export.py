"""Time to write resnet50 with weights to ONNX: resnet-compiler (from the graph) vs
torch.onnx.export of torchvision's resnet50 with the dynamo and the TorchScript exporters.

Same process, same weights, median of 3 runs each (interleaved). Run: python benchmarks/onnx_export.py
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision

import resnet_compiler as rc

ROOT = Path(__file__).resolve().parents[1]
RUNS = 3


def quietly(fn):
    """torch.onnx.export prints progress and warnings; keep the table readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn()


def main() -> None:
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().eval()
    sd = tv.state_dict()
    net = rc.compile(ROOT / "spec" / "resnet50.yaml")
    x = torch.randn(1, 3, 224, 224)
    tmp = Path(tempfile.mkdtemp())
    jobs = {
        "resnet-compiler (graph -> onnx)": (tmp / "ours.onnx", lambda p: net.to_onnx(p, weights=sd)),
        "torch.onnx.export dynamo=True": (tmp / "dynamo.onnx", lambda p: quietly(
            lambda: torch.onnx.export(tv, (x,), str(p), dynamo=True, verbose=False))),
        "torch.onnx.export dynamo=False": (tmp / "ts.onnx", lambda p: quietly(
            lambda: torch.onnx.export(tv, (x,), str(p), dynamo=False, opset_version=17))),
    }
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(RUNS):
        for name, (path, fn) in jobs.items():
            t = time.perf_counter()
            fn(path)
            times[name].append(time.perf_counter() - t)
    ours = statistics.median(times["resnet-compiler (graph -> onnx)"])
    print(f"resnet50 with weights to ONNX, median of {RUNS} ({os.cpu_count()} CPUs, torch "
          f"{torch.__version__})")
    print("| exporter | time (s) | vs resnet-compiler | file size (MB) |")
    print("|---|---:|---:|---:|")
    for name, (path, _) in jobs.items():
        m = statistics.median(times[name])
        size = sum(f.stat().st_size for f in tmp.iterdir() if f.name.startswith(path.name))
        print(f"| {name} | {m:.2f} | {m / ours:.1f}x | {size / 1e6:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
