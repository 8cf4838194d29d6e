"""Where a training step of the seed network spends its GPU time, per configuration.

Prints the top CUDA kernels (torch.profiler) for AMP + channels_last, and images/s for variants
that isolate the usual suspects: the 1-channel 7x7 stem convolution under channels_last, batch
size, and torch.compile modes. Usage: python benchmarks/gpu_profile_train.py OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import resnet_compiler as rc  # noqa: E402


def run(amp: bool, channels_last: bool, compile_mode: str | None, batch: int, steps: int = 60,
        profile: bool = False) -> dict:
    torch.manual_seed(0)
    model = rc.compile(ROOT / "spec" / "resnet18_fashion_mnist.yaml").build_torch().cuda().train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = torch.compile(model, mode=compile_mode) if compile_mode else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.rand(batch, 1, 96, 96, device="cuda").contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(step_model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(12):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    out = {"amp": amp, "channels_last": channels_last, "compile": compile_mode, "batch": batch,
           "step_ms": dt * 1000, "images_per_s": batch / dt}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof
        with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        out["top_kernels"] = p.key_averages().table(sort_by="cuda_time_total", row_limit=12)
    return out


def main() -> None:
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    configs = [  # amp, channels_last, compile mode, batch, profile
        (False, False, None, 128, True),
        (True, True, None, 128, True),
        (True, False, None, 128, False),
        (True, True, None, 512, False),
        (False, False, None, 512, False),
        (True, True, "reduce-overhead", 128, False),
    ]
    rows = []
    for amp, cl, mode, batch, profile in configs:
        r = run(amp, cl, mode, batch, profile=profile)
        rows.append(r)
        print({k: v for k, v in r.items() if k != "top_kernels"}, flush=True)
        if profile:
            print(r["top_kernels"], flush=True)
        Path(sys.argv[1]).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
