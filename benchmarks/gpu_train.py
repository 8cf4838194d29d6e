"""GPU training throughput of the emitted seed network: fp32 eager vs AMP(bf16)+channels_last vs
AMP+channels_last+torch.compile, at 96x96 and batch 128 on synthetic data.

Prints the GPU model and a table, and writes JSON to the path given. Sized to finish in a few
minutes on one H100/H200 (torch.compile's first compile takes most of it). `--smoke` runs a couple
of tiny steps on whatever device is present (CPU included) to prove the script works.

    python benchmarks/gpu_train.py results.json [--steps 100] [--warmup 15] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
SEED_SPEC = ROOT / "spec" / "resnet18_fashion_mnist.yaml"
sys.path.insert(0, str(ROOT))


def build() -> torch.nn.Module:
    import resnet_compiler as rc
    torch.manual_seed(0)
    return rc.compile(SEED_SPEC).build_torch()


def measure(device: torch.device, amp: torch.dtype | None, channels_last: bool, compiled: str | None,
            batch: int, warmup: int, steps: int) -> dict[str, float]:
    """Images/s of full SGD steps (forward, backward, update) after `warmup` steps."""
    model = build().to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = torch.compile(model, mode=compiled) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.rand(batch, 1, 96, 96, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(step_model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    return {"images_per_s": steps * batch / dt, "step_ms": 1000 * dt / steps, "warmup_s": warm_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json_out", help="write the results as JSON here")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=100, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps (includes compilation)")
    p.add_argument("--smoke", action="store_true", help="2 tiny steps per configuration, any device")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("no CUDA device: run on a GPU, or add --smoke for a quick check", file=sys.stderr)
        return 2
    if args.smoke:
        args.batch, args.steps, args.warmup = min(args.batch, 4), 1, 1
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 eager means true fp32
        torch.backends.cudnn.allow_tf32 = False
    half = torch.bfloat16 if (not cuda or torch.cuda.is_bf16_supported()) else torch.float16
    configs = [
        ("fp32 eager NCHW", None, False, None),
        (f"AMP {str(half).split('.')[-1]} + channels_last", half, True, None),
        (f"AMP {str(half).split('.')[-1]} + channels_last + compile", half, True, "default"),
        (f"AMP {str(half).split('.')[-1]} + channels_last + compile, CUDA graphs", half, True,
         "reduce-overhead"),
    ]
    gpu = torch.cuda.get_device_name(0) if cuda else f"none (CPU: {platform.machine()})"
    print(f"device: {gpu} | torch {torch.__version__} | batch {args.batch} | 1x96x96 | "
          f"{args.steps} timed steps after {args.warmup} warm-up", flush=True)
    rows = []
    for name, amp, cl, comp in configs:
        r = measure(device, amp, cl, comp, args.batch, args.warmup, args.steps)
        rows.append({"config": name, **r})
        print(f"  {name:42} {r['images_per_s']:10.1f} img/s  {r['step_ms']:8.2f} ms/step  "
              f"(warm-up {r['warmup_s']:.1f}s)", flush=True)
        if cuda:
            torch.cuda.empty_cache()
    base = rows[0]["images_per_s"]
    print(f"\n{'configuration':42} {'images/s':>10} {'speed-up':>9}")
    for r in rows:
        r["speedup_vs_fp32"] = r["images_per_s"] / base
        print(f"{r['config']:42} {r['images_per_s']:10.1f} {r['speedup_vs_fp32']:8.2f}x")
    Path(args.json_out).write_text(json.dumps({
        "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "batch": args.batch,
        "input": [1, 96, 96], "steps": args.steps, "warmup": args.warmup, "smoke": args.smoke,
        "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
