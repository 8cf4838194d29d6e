"""onnxruntime CPU throughput of resnet50 in int8 (static QDQ, calibrated on digits) against the
fp32 file of the same weights, and the fp16 file beside them: batch 8, intra_op_num_threads=2,
the same inputs, interleaved rounds (median). Goal: int8 >= 2.5x fp32.

Beside it, the ceiling this CPU puts on that ratio: a 1024^3 GEMM through onnxruntime's own int8
kernels (MatMulInteger, the GEMM QLinearConv runs on) against its fp32 MatMul, one thread, for
each activation/weight type pair. A convolution network cannot gain more from int8 than its GEMMs
do, so the network's ratio is reported as a fraction of that ceiling too.

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
from resnet_compiler.runtime.quantize import quantize_int8
from resnet_compiler.runtime.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]
BATCH, THREADS = 8, 2
GEMM = 1024  # M = N = K of the ceiling measurement


def _gemm_session(a_type: str, w_type: str) -> tuple[ort.InferenceSession, np.ndarray]:
    """One-node model: MatMul in fp32, or MatMulInteger with the given uint8/int8 types."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    n = GEMM
    if a_type == "fp32":
        x = rng.standard_normal((n, n), dtype=np.float32)
        inits = [numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "w")]
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        types = (TensorProto.FLOAT, TensorProto.FLOAT)
    else:
        dt = {"u8": np.uint8, "s8": np.int8}
        lo = {"u8": 0, "s8": -63}
        x = rng.integers(lo[a_type], 64, (n, n)).astype(dt[a_type])
        inits = [numpy_helper.from_array(rng.integers(lo[w_type], 64, (n, n))
                                         .astype(dt[w_type]), "w"),
                 numpy_helper.from_array(np.array(1, dt[a_type]), "a_zero"),
                 numpy_helper.from_array(np.array(0, dt[w_type]), "w_zero")]
        node = helper.make_node("MatMulInteger", ["a", "w", "a_zero", "w_zero"], ["y"])
        types = (TensorProto.UINT8 if a_type == "u8" else TensorProto.INT8, TensorProto.INT32)
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", types[0], [n, n])],
                              [helper.make_tensor_value_info("y", types[1], [n, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"]), x


def gemm_ceiling(rounds: int = 15) -> dict[str, float]:
    """GMAC/s of onnxruntime's fp32 and int8 GEMM kernels on this CPU, one thread, interleaved."""
    pairs = {"fp32": ("fp32", "fp32"), "u8 x s8": ("u8", "s8"), "u8 x u8": ("u8", "u8"),
             "s8 x s8": ("s8", "s8")}
    sessions = {k: _gemm_session(*v) for k, v in pairs.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s, x in sessions.values():
        s.run(None, {"a": x})
    for _ in range(rounds):
        for k, (s, x) in sessions.items():
            t = time.perf_counter()
            s.run(None, {"a": x})
            times[k].append(time.perf_counter() - t)
    return {k: GEMM ** 3 / statistics.median(v) / 1e9 for k, v in times.items()}


def cpu_features() -> str:
    """The x86 vector extensions that decide which int8 kernels onnxruntime can use."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return platform.machine()
    have = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
            if f in flags]
    return f"{platform.machine()}: {' '.join(have) or 'no AVX2'}"


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
    gemm = gemm_ceiling()
    ceiling = gemm["u8 x s8"] / gemm["fp32"]
    print(f"GEMM {GEMM}^3, 1 thread, onnxruntime kernels ({cpu_features()}):")
    for k, v in gemm.items():
        print(f"  {k:<8} {v:>6.1f} GMAC/s {v / gemm['fp32']:>5.2f}x")
    print(f"int8 ceiling on this CPU (u8 x s8 GEMM / fp32 GEMM) = {ceiling:.2f};"
          f" the network reaches {ratio / ceiling:.0%} of it")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "batch": BATCH, "threads": THREADS, "rounds": args.rounds,
            "images_per_s": ips, "int8_over_fp32": ratio,
            "seconds": times, "agreement": report.agreement,
            "calibration_images": report.calibration_images,
            "cpu": cpu_features(), "gemm_gmac_per_s": gemm,
            "gemm_int8_over_fp32": ceiling}, indent=2) + "\n")


if __name__ == "__main__":
    main()
