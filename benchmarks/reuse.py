"""What reuse costs. (1) In process: compiling the spec at the end of a three-level `extends:`
chain (top -> l2 -> l1 -> a flat resnet50d, each level one change) against the same network
written flat, interleaved rounds, medians; goal: at most 1.2x. (2) Whole process: `resnet-compile
models` (every preset with params, GMACs and peer) against `python -c "import torch"`,
interleaved; goal: at most 0.3x.

    python benchmarks/reuse.py [--rounds 21] [--out benchmarks/results/reuse.txt]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import resnet_compiler as rc

ROOT = Path(__file__).resolve().parent.parent
CHAIN_GOAL, MODELS_GOAL = 1.2, 0.3
PER_ROUND = 10


def _per_compile(path: Path) -> float:
    start = time.perf_counter()
    for _ in range(PER_ROUND):
        rc.compile(path)
    return (time.perf_counter() - start) / PER_ROUND


def _files(folder: Path) -> tuple[Path, Path]:
    """The chain's top file and the same network flat."""
    base = rc.compile("resnet50d").to_spec_yaml().replace("name: resnet50d", "name: base")
    (folder / "base.yaml").write_text(base)
    (folder / "l1.yaml").write_text("extends: base.yaml\nname: l1\nstages: {layer3: {depth: 23}}\n")
    (folder / "l2.yaml").write_text("extends: l1.yaml\nname: l2\ndefaults: {act: silu}\n")
    (folder / "top.yaml").write_text("extends: l2.yaml\nname: chained\nnum_classes: 10\n")
    flat = rc.compile(folder / "top.yaml").to_spec_yaml()
    (folder / "flat.yaml").write_text(flat)
    return folder / "top.yaml", folder / "flat.yaml"


def _run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reuse.txt"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        top, flat = _files(Path(tmp))
        a, b = rc.compile(top), rc.compile(flat)
        assert (a.total_params, a.total_macs) == (b.total_params, b.total_macs)
        chain, plain = [], []
        for i in range(args.rounds):
            for which in ((top, flat) if i % 2 else (flat, top)):
                (chain if which == top else plain).append(_per_compile(which))
    mc, mf = statistics.median(chain), statistics.median(plain)
    models_cmd = [str(Path(sys.executable).with_name("resnet-compile")), "models"]
    torch_cmd = [sys.executable, "-c", "import torch"]
    for cmd in (models_cmd, torch_cmd):
        _run(cmd)
    tm, tt = [], []
    for i in range(max(5, args.rounds // 3)):
        for cmd in ((models_cmd, torch_cmd) if i % 2 else (torch_cmd, models_cmd)):
            (tm if cmd is models_cmd else tt).append(_run(cmd))
    m_models, m_torch = statistics.median(tm), statistics.median(tt)
    lines = [f"{platform.processor() or platform.machine()}, Python {platform.python_version()},"
             f" medians of interleaved rounds",
             f"compile, 3-level extends: chain   {mc * 1e3:7.1f} ms",
             f"compile, the same spec flat       {mf * 1e3:7.1f} ms",
             f"chain / flat = {mc / mf:.2f} (goal <= {CHAIN_GOAL}: "
             f"{'met' if mc / mf <= CHAIN_GOAL else 'NOT met'})",
             f"resnet-compile models             {m_models:7.3f} s",
             f'python -c "import torch"          {m_torch:7.3f} s',
             f"models / import torch = {m_models / m_torch:.2f} (goal <= {MODELS_GOAL}: "
             f"{'met' if m_models / m_torch <= MODELS_GOAL else 'NOT met'})"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
