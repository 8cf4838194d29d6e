"""Latency and throughput of a model, per batch size: onnxruntime on an ONNX file, and for a spec
also torch eager (and torch.compile) on the same weights, side by side.

Each runtime is warmed up, then timed in rounds that alternate between the runtimes, so a
machine that slows down or speeds up during the run (other load, clock changes) affects all of
them alike. Runs inside a round are consecutive: onnxruntime's and torch's worker threads spin
for a while after each run, and alternating single runs would make each pay for the other's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .limits import check_activations, check_forward, check_side

FIELDS = ("runtime", "batch", "p50_ms", "p90_ms", "p99_ms", "images_per_s", "runs")


@dataclass
class Row:
    """One runtime at one batch size: latency percentiles over the timed runs, and throughput
    (images per second at the median latency)."""

    runtime: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    runs: int


@dataclass
class Runtime:
    """A name and, per batch size, a function that runs one batch to completion."""

    name: str
    prepare: Callable[[int], Callable[[], Any]]


def _row(name: str, batch: int, seconds: list[float]) -> Row:
    ms = np.asarray(seconds) * 1000
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    return Row(name, batch, p50, p90, p99, batch * 1000 / statistics.median(ms.tolist()), len(ms))


def measure(runtimes: Sequence[Runtime], batches: Sequence[int], runs: int = 20,
            warmup: int = 3, rounds: int = 4) -> list[Row]:
    """Time every runtime at every batch size: `warmup` untimed runs, then `runs` timed ones
    spread over `rounds` alternating rounds."""
    rows = []
    rounds = max(1, min(rounds, runs))
    for batch in batches:
        calls = [rt.prepare(batch) for rt in runtimes]
        for call in calls:
            for _ in range(warmup):
                call()
        times: list[list[float]] = [[] for _ in runtimes]
        for r in range(rounds):
            n = runs // rounds + (1 if r < runs % rounds else 0)
            for call, out in zip(calls, times, strict=True):
                for _ in range(n):
                    t = time.perf_counter()
                    call()
                    out.append(time.perf_counter() - t)
        rows += [_row(rt.name, batch, t) for rt, t in zip(runtimes, times, strict=True)]
    return rows


def format_table(rows: Sequence[Row]) -> str:
    width = max([len("runtime"), *(len(r.runtime) for r in rows)])
    lines = [f"{'runtime':<{width}}  batch   p50 ms   p90 ms   p99 ms   images/s"]
    for r in rows:
        lines.append(f"{r.runtime:<{width}}  {r.batch:>5}  {r.p50_ms:>7.2f}  {r.p90_ms:>7.2f}"
                     f"  {r.p99_ms:>7.2f}  {r.images_per_s:>9.1f}")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(r).items()})
    return buf.getvalue()


def to_json(rows: Sequence[Row], info: dict[str, Any]) -> str:
    return json.dumps({**info, "results": [asdict(r) for r in rows]}, indent=2) + "\n"


# ------------------------------------------------------------------------------------ runtimes

def _input_size(session: Any) -> tuple[int, int, int]:
    """Channels, height and width the model takes; symbolic sizes from its preprocessing
    metadata (a --dynamic-hw file)."""
    shape = session.get_inputs()[0].shape
    if len(shape) != 4:
        raise UsageError(f"the model's input has {len(shape)} dimensions; images are NCHW")
    c, h, w = shape[1:]
    if all(isinstance(v, int) for v in (c, h, w)):
        return c, h, w
    meta = session.get_modelmeta().custom_metadata_map
    if "preprocessing" not in meta:
        raise UsageError("the model's input size is symbolic and it has no preprocessing "
                         "metadata to take the size from")
    from ..language.preprocessing import Preprocessing
    p = Preprocessing.from_json(meta["preprocessing"])
    check_side(p.height, "the preprocessing metadata's height")
    check_side(p.width, "the preprocessing metadata's width")
    return p.channels, p.height, p.width


def onnx_runtime(path: str | os.PathLike[str], provider: str, threads: int | None,
                 seed: int = 0) -> Runtime:
    """onnxruntime on the file, random inputs of the model's size and input type."""
    from .infer import graph_attrs, open_session
    session = open_session(path, provider, threads)
    inp = session.get_inputs()[0]
    c, h, w = _input_size(session)
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    attrs = graph_attrs(session, (c, h, w))

    def prepare(batch: int) -> Callable[[], Any]:
        if isinstance(inp.shape[0], int) and inp.shape[0] != batch:
            raise UsageError(f"batch {batch}: the model has a fixed batch of {inp.shape[0]}")
        check_activations(attrs, h, w, batch, str(path))
        x = np.random.default_rng(seed).standard_normal((batch, c, h, w)).astype(dtype)
        return lambda: session.run(None, {inp.name: x})

    return Runtime(f"onnxruntime {provider}", prepare)


def torch_runtime(module: Any, input_shape: tuple[int, int, int], device: str,
                  name: str) -> Runtime:
    """A torch module in eval mode under inference_mode, synchronised on CUDA."""
    import torch
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def prepare(batch: int) -> Callable[[], Any]:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, *input_shape, generator=g).to(device)

        def run() -> Any:
            with torch.inference_mode():
                y = module(x)
            sync()
            return y

        return run

    return Runtime(name, prepare)


def spec_runtimes(spec: str, provider: str, threads: int | None, weights: Any,
                  compile_too: bool, tmp: str, overrides: Sequence[str] = (),
                  batches: Sequence[int] = (1,)) -> tuple[Any, list[Runtime]]:
    """For a spec: its ONNX file (written into `tmp`) in onnxruntime, and the emitted PyTorch
    module with the same weights in eager mode (and compiled)."""
    from ..compiler import compile as compile_spec
    net = compile_spec(spec, overrides=overrides)
    check_forward(net.ir.graph, [net.input_shape[1:]], max(batches))  # before torch loads

    import torch

    from .devices import torch_device
    from .verify import _torch_module
    from .weights import as_numpy_state_dict, check_state_dict, init_weights

    device = torch_device(provider)
    sd = init_weights(net.graph, realistic_bn=True) if weights is None \
        else as_numpy_state_dict(weights)
    check_state_dict(net.graph, sd)
    path = Path(tmp) / f"{net.name}.onnx"
    net.to_onnx(path, weights=sd)
    runtimes = [onnx_runtime(path, provider, threads)]
    if threads:
        torch.set_num_threads(threads)
    module = _torch_module(net, sd, device)
    runtimes.append(torch_runtime(module, net.input_shape, device, f"torch eager {device}"))
    if compile_too:
        runtimes.append(torch_runtime(torch.compile(module), net.input_shape, device,
                                      f"torch.compile {device}"))
    return net, runtimes


def bench(model: str, provider: str = "cpu", batches: Sequence[int] = (1, 8, 32),
          threads: int | None = None, weights: Any = None, compile_too: bool = False,
          runs: int = 20, warmup: int = 3, rounds: int = 4,
          overrides: Sequence[str] = ()) -> tuple[list[Row], dict[str, Any]]:
    """Rows for an ONNX file (onnxruntime) or a spec or preset name (onnxruntime, torch eager,
    torch.compile), and a description of the run."""
    is_onnx = model.endswith(".onnx")
    if is_onnx and not Path(model).is_file():
        raise UsageError(f"{model}: no such ONNX file")
    if is_onnx and overrides:
        raise UsageError("--set changes a spec; an ONNX file is already compiled")
    info: dict[str, Any] = {"model": model, "provider": provider, "threads": threads,
                            "runs": runs, "warmup": warmup, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="resnet-bench-") as tmp:
        if is_onnx:
            runtimes = [onnx_runtime(model, provider, threads)]
        else:
            net, runtimes = spec_runtimes(model, provider, threads, weights, compile_too, tmp,
                                          overrides, batches)
            info["name"] = net.name
        return measure(runtimes, batches, runs, warmup, rounds), info
