"""onnxruntime CPU throughput of resnet50 in int8 (static QDQ, calibrated on digits) against the
fp32 file of the same weights, and the fp16 file beside them: batch 8, intra_op_num_threads=2,
the same inputs, interleaved rounds (median). Goal: int8 >= 2.5x fp32.

Run: python benchmarks/int8_throughput.py [--rounds 7] [--calibration-images 128]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import resnet_compiler as rc
from resnet_compiler.quantize import quantize_int8
from resnet_compiler.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]
BATCH, THREADS = 8, 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calibration-images", type=int, default=128)
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()
    logging.disable(logging.WARNING)  # onnxruntime's quantizer suggests pre-processing
    net = rc.compile(ROOT / "spec" / "resnet50.yaml")
    weights = init_weights(net.graph, seed=0, realistic_bn=True)
    tmp = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    paths = {k: tmp / f"{k}.onnx" for k in ("fp32", "fp16", "int8")}
    net.to_onnx(paths["fp32"], weights=weights)
    net.to_onnx(paths["fp16"], weights=weights, dtype="fp16")
    t = time.perf_counter()
    report = quantize_int8(net, paths["int8"], weights=weights, dataset="digits",
                           calibration_images=args.calibration_images)
    quantize_s = time.perf_counter() - t
    print(report.format(), end="")
    print(f"  quantization (calibration and both evaluations) took {quantize_s:.1f} s")

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    sessions = {k: ort.InferenceSession(str(v), so, providers=["CPUExecutionProvider"])
                for k, v in paths.items()}
    x = np.random.default_rng(0).standard_normal((BATCH, 3, 224, 224), dtype=np.float32)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():  # warm-up
        s.run(None, {"input": x})
    for _ in range(args.rounds):  # one run of each per round, in turn
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"input": x})
            times[k].append(time.perf_counter() - t)
    ips = {k: BATCH / statistics.median(v) for k, v in times.items()}
    print(f"resnet50, batch {BATCH}, {THREADS} threads, median of {args.rounds} interleaved rounds"
          f" ({platform.machine()}, onnxruntime {ort.__version__}):")
    print(f"{'file':<6} {'images/s':>9} {'vs fp32':>8} {'MiB':>7}")
    for k in sessions:
        print(f"{k:<6} {ips[k]:>9.1f} {ips[k] / ips['fp32']:>7.2f}x"
              f" {paths[k].stat().st_size / 2**20:>7.1f}")
    ratio = ips["int8"] / ips["fp32"]
    print(f"int8 / fp32 = {ratio:.2f} (goal >= 2.5)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "batch": BATCH, "threads": THREADS, "rounds": args.rounds,
            "images_per_s": ips, "int8_over_fp32": ratio,
            "seconds": times, "agreement": report.agreement,
            "calibration_images": report.calibration_images}, indent=2) + "\n")


if __name__ == "__main__":
    main()
