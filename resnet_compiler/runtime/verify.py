"""Cross-runtime verification: the emitted PyTorch module and the emitted ONNX model, given the
same weights and inputs, must compute the same function, and every shape the graph inferred must
equal torch's actual shape and ONNX shape inference's.

Tolerance: max|a - b| <= rtol * max(1, max|a|), with `a` torch's fp32 eval output and rtol per
ONNX dtype (`TOLERANCES`, each with its reason, printed in the report). Where an fp32 file
exceeds it, a float64 run of the emitted module decides: fp32 rounding of a very deep network can
alone exceed 1e-4, and then onnxruntime passes when it is no further from the exact function
than torch's own fp32 forward is (within ARBITER_FACTOR). Without weights the
network gets realistic BatchNorm statistics (identity statistics let activations grow layer by
layer, which would make any comparison meaningless).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError
from ..messages import first_line
from .limits import check_forward

if TYPE_CHECKING:
    from ..compiler import CompiledNetwork

RTOL = 1e-4
ARBITER_FACTOR = 2.0
TIMED_RUNS = 3
# ONNX dtype -> (rtol, why): rounding per value is half an ulp, 2^-(mantissa bits + 1), and it
# compounds over 50+ layers whose sums run over thousands of products
TOLERANCES = {
    "fp32": (RTOL, "fp32 against fp32: only summation order differs (kernels, BN folding)"),
    "fp16": (1e-2, "fp16 keeps 10 mantissa bits (2^-11 = 4.9e-4 per rounding) in weights and"
                   " activations, compounded over every layer; reductions and norms run in fp32"),
    "bf16": (5e-2, "bf16 keeps 7 mantissa bits (2^-8 = 3.9e-3 per rounding), 8x coarser than"
                   " fp16; reductions and norms run in fp32"),
}


@dataclass
class VerifyReport:
    """What `verify` measured; `ok` when outputs agree within tolerance and all shapes match."""

    name: str
    batch: int
    torch_device: str
    ort_device: str
    fold_bn: bool
    opset: int
    dtype: str = "fp32"
    not_run: str | None = None  # why onnxruntime could not run the file (bf16 on CPU)
    max_abs: float = 0.0
    scale: float = 1.0
    argmax_agree: int = 0
    torch_ms: float = 0.0
    ort_ms: float = 0.0
    compared: tuple[str, ...] = ("logits",)  # the outputs compared, in order
    worst: str = "logits"  # the one with the largest relative error
    values_checked: int = 0
    modules_checked: int = 0
    shape_mismatches: list[str] = field(default_factory=list)
    checker_error: str | None = None
    # where fp32 exceeds its tolerance: each runtime's relative distance from float64
    exact_torch: float | None = None
    exact_ort: float | None = None

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.scale

    @property
    def arbiter_ok(self) -> bool:
        """onnxruntime no further from the float64 run than torch fp32 is (within the factor)."""
        return self.exact_ort is not None and self.exact_torch is not None and bool(
            np.isfinite(self.exact_ort)) and self.exact_ort <= ARBITER_FACTOR * self.exact_torch

    @property
    def rtol(self) -> float:
        return TOLERANCES[self.dtype][0]

    @property
    def outputs_ok(self) -> bool:
        return self.not_run is not None or self.within_tolerance or self.arbiter_ok

    @property
    def within_tolerance(self) -> bool:
        return bool(np.isfinite(self.max_abs)) and self.max_abs <= self.rtol * self.scale

    @property
    def ok(self) -> bool:
        return self.outputs_ok and not self.shape_mismatches and self.checker_error is None

    def format(self) -> str:
        """A short human-readable report (one fact per line)."""
        mark = "ok" if self.ok else "FAILED"
        rtol, why = TOLERANCES[self.dtype]
        lines = [
            f"verify {self.name}: {mark}",
            f"  tolerance for {self.dtype} ONNX against torch fp32: {rtol:.0e} x max(1, max|torch|)"
            f" ({why})",
            f"  outputs: not compared: {self.not_run}" if self.not_run else
            f"  outputs: max abs err {self.max_abs:.2e}, rel err {self.max_rel:.2e} "
            f"(tolerance {rtol * self.scale:.2e})"
            f"{'' if self.within_tolerance else '  <- exceeds tolerance'}",
            *([f"  float64 run of the emitted module: torch fp32 is {self.exact_torch:.2e} from it,"
               f" onnxruntime {self.exact_ort:.2e}: "
               + (f"no further than {ARBITER_FACTOR:g}x torch's own fp32 rounding, so the"
                  " difference is fp32 rounding of a deep network, not a different function"
                  if self.arbiter_ok else f"more than {ARBITER_FACTOR:g}x torch's own fp32"
                  " rounding: the ONNX file computes another function")]
              if self.exact_ort is not None else []),
            *([f"  compared {len(self.compared)} outputs ({', '.join(self.compared)});"
               f" the largest error is {self.worst}'s"] if len(self.compared) > 1 else []),
            f"  argmax agrees on {self.argmax_agree}/{self.batch} inputs" if "logits" in
            self.compared else "  argmax: no logits (head: none)",
            f"  shapes: {self.values_checked} ONNX values and {self.modules_checked} torch modules"
            f" match the graph" if not self.shape_mismatches else
            f"  shapes: {len(self.shape_mismatches)} mismatches: "
            + "; ".join(self.shape_mismatches[:6]),
            f"  onnx checker (full): {'passed' if self.checker_error is None else self.checker_error}",
            f"  torch {self.torch_device} fp32 eval: {self.torch_ms:.1f} ms/batch; onnxruntime "
            f"{self.ort_device}: {self.ort_ms:.1f} ms/batch (batch {self.batch}, median of "
            f"{TIMED_RUNS})",
            f"  onnx: {self.dtype}, opset {self.opset}, BatchNorm"
            f" {'folded' if self.fold_bn else 'kept'}",
        ]
        if self.not_run:
            del lines[3]  # no argmax agreement without an onnxruntime run
            lines[-2] = (f"  torch {self.torch_device} fp32 eval: {self.torch_ms:.1f} ms/batch"
                         f" (batch {self.batch}, median of {TIMED_RUNS})")
        return "\n".join(lines) + "\n"


def as_outputs(result: Any) -> list[Any]:
    """A model's result as a list: a tensor alone, or the listed feature maps (then logits)."""
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _errors(want: list[np.ndarray], got: list[np.ndarray]) -> list[tuple[float, float]]:
    """(max abs error, scale) per output; the scale is max(1, max|torch|)."""
    out = []
    for a, b in zip(want, got, strict=True):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64)) if a.shape == b.shape else None
        err = float(diff.max()) if diff is not None and np.isfinite(diff).all() else float("inf")
        out.append((err, max(1.0, float(np.abs(a).max()))))
    return out


def _median_ms(fn: Any, sync: Any = None) -> float:
    times = []
    for _ in range(TIMED_RUNS):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _torch_module(net: CompiledNetwork, sd: dict[str, np.ndarray], device: str) -> Any:
    """The emitted module with `sd` loaded strictly. Built on the CPU rather than the meta
    device: some modules compute constants while they are built (ECA's kernel size, blur
    pooling's fixed filter, a non-persistent buffer that no state_dict carries)."""
    import torch
    with torch.random.fork_rng():  # its own initialisation must not move the caller's RNG
        module = net.build_torch()
    state = {k: torch.from_numpy(np.ascontiguousarray(
        v, dtype=np.float32 if np.issubdtype(v.dtype, np.floating) else v.dtype))
        for k, v in sd.items()}
    for key in module.state_dict():  # inference ignores the BN step counter
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval().to(device)


def _torch_shapes(module: Any, graph: Any, x: Any) -> tuple[int, list[str]]:
    """Run once with hooks on every module named like a graph node; compare output shapes."""
    import torch
    seen: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, sub in module.named_modules():
        if name in graph.nodes:
            handles.append(sub.register_forward_hook(
                lambda _m, _i, out, name=name: seen.__setitem__(name, tuple(out.shape[1:]))))
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for h in handles:
            h.remove()
    bad = [f"torch {n}: {seen[n]} vs graph {tuple(graph.nodes[n]['shape'])}"
           for n in seen if seen[n] != tuple(graph.nodes[n]["shape"])]
    return len(seen), bad


def _onnx_shapes(path: Path, graph: Any, fold_bn: bool, batch: int | None) -> tuple[int, list[str]]:
    """ONNX shape inference, run without our declared value_info, against the graph's shapes."""
    import onnx

    from ..emit.onnx import value_names
    from ..ops import REGISTRY
    model = onnx.load(str(path))
    del model.graph.value_info[:]
    for t in model.graph.initializer:  # inference needs the dims only, not the weights
        if t.data_type == onnx.TensorProto.FLOAT:  # (int64 shapes and pads it reads)
            t.ClearField("raw_data")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    dims: dict[str, list[Any]] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims[vi.name] = [d.dim_param or d.dim_value for d in t.shape.dim]
    bad = []
    names = value_names(graph, fold_bn)
    for node, value in names.items():
        data = graph.nodes[node]
        # a split's values are its parts
        opdef = REGISTRY[data["op"]]
        parts = {f"{value}[{i}]": s for i, s in enumerate(opdef.part_shapes(data, data["shape"]))
                 } if opdef.has_parts else {value: data["shape"]}
        for name, shape in parts.items():
            want = [batch or "batch", *shape]
            got = dims.get(name)
            if got is not None and not batch and isinstance(got[0], str) and got[0]:
                got = ["batch", *got[1:]]  # any symbolic batch (inference may rename it)
            if got != want:
                bad.append(f"onnx {name}: {got if got is not None else 'no shape'} vs graph {want}")
    return len(names), bad


def verify(net: CompiledNetwork, weights: Any = None, batch: int = 2, device: str = "cpu",
           opset: int | None = None, fold_bn: bool = True, dtype: str = "fp32",
           keep_io_types: bool = True) -> VerifyReport:
    """Compare torch and onnxruntime on the same seeded inputs; see the module docstring.
    `dtype`: the ONNX file's (fp32, fp16, bf16), against torch fp32 with its own tolerance."""
    import onnx
    import torch

    from ..emit.onnx import check_dtype, write_onnx
    from .devices import torch_device
    from .infer import open_session, session_device
    from .weights import as_numpy_state_dict, check_state_dict, init_weights

    device = torch_device(device)
    if batch < 1:
        raise UsageError(f"batch {batch}: must be at least 1")
    check_forward(net.ir.graph, [tuple(net.input_shape[1:])], batch)
    graph = net.graph
    opset = check_dtype(dtype, opset)
    sd = init_weights(graph, realistic_bn=True) if weights is None else as_numpy_state_dict(weights)
    check_state_dict(graph, sd)
    report = VerifyReport(net.name, batch, device, "cpu", fold_bn, opset, dtype)

    c, h, w = graph.graph["input_shape"]
    x_np = np.random.default_rng(0).standard_normal((batch, c, h, w), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="resnet-verify-") as tmp:
        path = Path(tmp) / f"{net.name}.onnx"
        write_onnx(graph, path, weights=sd, opset=opset, fold_bn=fold_bn, dtype=dtype,
                   keep_io_types=keep_io_types)
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as e:
            report.checker_error = first_line(e)
        report.values_checked, bad = _onnx_shapes(path, graph, fold_bn, None)
        report.shape_mismatches += bad

        # torch first, then onnxruntime: each runtime's idle threads spin for a while after a
        # run, so interleaving them would slow both down
        module = _torch_module(net, sd, device)
        x = torch.from_numpy(x_np).to(device)
        # fp32 means fp32: TF32 convolutions on Ampere+ GPUs differ from fp32 by ~1e-3
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            report.modules_checked, bad = _torch_shapes(module, graph, x)
            report.shape_mismatches += bad
            sync = torch.cuda.synchronize if device == "cuda" else None
            with torch.inference_mode():
                want = [t.float().cpu().numpy() for t in as_outputs(module(x))]
                report.torch_ms = _median_ms(lambda: module(x), sync)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        module = None  # free its memory before onnxruntime loads

        try:
            session = open_session(path, "auto", exact_fp32=True)
        except UsageError as e:
            if dtype != "bf16":
                raise
            why = str(e).split("cannot load it ", 1)[-1]
            report.not_run = (f"onnxruntime here has no bfloat16 kernels for this model {why};"
                              f" the file is checked below")
            return report
    report.ort_device = session_device(session)
    feed = {session.get_inputs()[0].name: _as_input(x_np, session)}
    got = session.run(None, feed)
    report.ort_ms = _median_ms(lambda: session.run(None, feed))

    names = [o.name for o in session.get_outputs()]
    errors = _errors(want, got)
    worst = max(range(len(errors)), key=lambda i: errors[i][0] / errors[i][1])
    report.compared, report.worst = tuple(names), names[worst]
    report.max_abs, report.scale = errors[worst]
    if names[-1] == "logits":
        report.argmax_agree = int((want[-1].argmax(1) == got[-1].argmax(1)).sum())
    if dtype == "fp32" and not report.within_tolerance and np.isfinite(report.max_abs):
        report.exact_torch, report.exact_ort = _float64_distances(net, sd, x_np, want, got)
    return report


def _float64_distances(net: CompiledNetwork, sd: dict[str, np.ndarray], x: np.ndarray,
                       want: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    """(torch fp32, onnxruntime) relative distance from the emitted module run in float64 on
    the CPU, over the outputs (the worst of each)."""
    import torch
    module = _torch_module(net, sd, "cpu").double()
    with torch.inference_mode():
        exact = [t.cpu().numpy() for t in as_outputs(module(torch.from_numpy(x).double()))]
    def worst(values: list[np.ndarray]) -> float:
        return max(e / s for e, s in _errors(exact, values))
    return worst(want), worst(got)


def _as_input(x: np.ndarray, session: Any) -> np.ndarray:
    """fp32 images in the type the model's input takes (fp16 without --keep-io-types)."""
    return x.astype(np.float16) if session.get_inputs()[0].type == "tensor(float16)" else x


def _as_float(y: np.ndarray) -> np.ndarray:
    return y.astype(np.float64)


@dataclass
class SizeCheck:
    """torch against onnxruntime at one input size, through one dynamic-size ONNX file."""

    height: int
    width: int
    max_abs: float
    scale: float
    rtol: float = RTOL

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_abs)) and self.max_abs <= self.rtol * self.scale

    def format(self) -> str:
        return (f"  {self.height}x{self.width}: max abs err {self.max_abs:.2e}, rel err"
                f" {self.max_abs / self.scale:.2e}{'' if self.ok else '  <- exceeds tolerance'}")


def verify_sizes(net: CompiledNetwork, sizes: list[tuple[int, int]], weights: Any = None,
                 batch: int = 2, opset: int | None = None, fold_bn: bool = True,
                 dtype: str = "fp32", keep_io_types: bool = True) -> list[SizeCheck]:
    """Write the network once with symbolic height and width, then compare torch (CPU, fp32,
    eval) and onnxruntime at each size, with the tolerance of `verify` for `dtype`."""
    import torch

    from .infer import open_session
    from .weights import as_numpy_state_dict, check_state_dict, init_weights

    check_forward(net.ir.graph, sizes, batch)
    sd = init_weights(net.graph, realistic_bn=True) if weights is None \
        else as_numpy_state_dict(weights)
    check_state_dict(net.graph, sd)
    module = _torch_module(net, sd, "cpu")
    out = []
    with tempfile.TemporaryDirectory(prefix="resnet-verify-") as tmp:
        path = Path(tmp) / f"{net.name}.onnx"
        net.to_onnx(path, weights=sd, opset=opset, fold_bn=fold_bn, dynamic_hw=True, dtype=dtype,
                    keep_io_types=keep_io_types)
        session = open_session(path, "cpu")
        c = net.input_shape[0]
        for h, w in sizes:
            x = np.random.default_rng(h * 7919 + w).standard_normal((batch, c, h, w),
                                                                   dtype=np.float32)
            with torch.inference_mode():
                want = [t.numpy() for t in as_outputs(module(torch.from_numpy(x)))]
            got = session.run(None, {session.get_inputs()[0].name: _as_input(x, session)})
            err, scale = max(_errors(want, got), key=lambda e: e[0] / e[1])
            out.append(SizeCheck(h, w, err, scale, TOLERANCES[dtype][0]))
    return out
