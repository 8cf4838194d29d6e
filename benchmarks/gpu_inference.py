"""Inference throughput on a GPU: the emitted resnet50 in torch CUDA vs onnxruntime's CUDA provider.

Same weights (seeded, realistic BatchNorm statistics), batch 32, fp32; onnxruntime runs with
CUDAExecutionProvider when the installed onnxruntime has it, and says so when it does not.
Usage: python benchmarks/gpu_inference.py [--spec spec/resnet50.yaml] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import resnet_compiler as rc
from resnet_compiler.runtime.weights import init_weights

ROOT = Path(__file__).resolve().parents[1]


def _median_s(fn, runs: int = 20) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default=str(ROOT / "spec" / "resnet50.yaml"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json")
    args = parser.parse_args()
    net = rc.compile(args.spec)
    sd = init_weights(net.graph, seed=0, realistic_bn=True)
    model = net.build_torch().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    x = np.random.default_rng(0).standard_normal((args.batch, *net.input_shape), dtype=np.float32)
    results: dict[str, object] = {"spec": net.name, "batch": args.batch,
                                  "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    model = model.cuda()
    xt = torch.from_numpy(x).cuda()

    def torch_run(m=model, inp=xt):
        with torch.inference_mode():
            m(inp)
        torch.cuda.synchronize()

    results["torch_cuda_fp32_img_s"] = args.batch / _median_s(torch_run)
    cl = model.to(memory_format=torch.channels_last)
    xcl = xt.to(memory_format=torch.channels_last)

    def torch_amp():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            cl(xcl)
        torch.cuda.synchronize()

    results["torch_cuda_bf16_channels_last_img_s"] = args.batch / _median_s(torch_amp)
    try:
        import onnxruntime as ort
        results["onnxruntime"] = ort.__version__
        results["ort_providers"] = ort.get_available_providers()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            net.to_onnx(path, weights=sd)
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in ort.get_available_providers()]
            session = ort.InferenceSession(str(path), providers=providers)
            results["ort_provider_used"] = session.get_providers()[0]
            name = session.get_inputs()[0].name
            ours = session.run(None, {name: x})[0]
            reference = net.build_torch().eval()
            reference.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
            with torch.inference_mode():
                want = reference(torch.from_numpy(x)).numpy()
            err = np.abs(ours - want).max() / max(1.0, np.abs(want).max())
            results["max_rel_err_vs_torch_cpu"] = float(err)
            results["ort_img_s"] = args.batch / _median_s(lambda: session.run(None, {name: x}))
    except ImportError:
        results["onnxruntime"] = "not installed on this machine"
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
