"""fp16 and bf16 ONNX: an emitted fp32 model rewritten to store weights and compute in 16 bits.

Half the bytes, and onnxruntime's fp16 kernels (CPU and CUDA) where they exist. Every op computes
in the low type except those in `FP32_OPS`: reductions and normalisations, whose statistics over
thousands of values lose too much in a 10-bit (fp16) or 7-bit (bf16) mantissa, and whose outputs
are small. A value crossing between the two worlds gets one Cast (shared by all its consumers).
With `keep_io_types` the model still takes and returns fp32, casting just inside.

bf16: opset 22 is the first where Conv, pooling and InstanceNormalization accept bfloat16, so bf16
files need it. onnxruntime's CPU provider has no bfloat16 kernels for Conv, pooling or most
activations (1.31), so a bf16 file is checked (onnx checker, shape inference) but runs only on
providers that have them.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from .onnx_builder import INPUT_NAME, OUTPUT_NAME

BF16_MIN_OPSET = 22
LOW_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
# ops that stay fp32: reductions and statistics (a GroupNorm lowers to InstanceNormalization)
FP32_OPS = frozenset({
    "GlobalAveragePool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceL2", "Softmax",
    "LogSoftmax", "InstanceNormalization", "BatchNormalization", "LayerNormalization",
    "GroupNormalization"})
FP16_MAX = 65504.0


def to_fp16(a: np.ndarray) -> np.ndarray:
    """Round to fp16, saturating at its largest finite value instead of overflowing to inf."""
    return np.clip(a, -FP16_MAX, FP16_MAX).astype("<f2")


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 values, rounded to nearest even."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def _low_array(a: np.ndarray, dtype: str) -> np.ndarray:
    return to_fp16(a) if dtype == "fp16" else to_bf16_bits(a)


def _constant_float(node: onnx.NodeProto) -> onnx.AttributeProto | None:
    if node.op_type != "Constant":
        return None
    for a in node.attribute:
        if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
            return a
    return None


def convert(model: onnx.ModelProto, arrays: list[np.ndarray], dtype: str,
            keep_io_types: bool) -> list[np.ndarray]:
    """Rewrite `model` (a skeleton whose initializer data is `arrays`) in place to compute in
    `dtype`; returns the initializer data in the model's new initializer order."""
    low = LOW_TYPES[dtype]
    g = model.graph
    inits = {t.name: (t, a) for t, a in zip(g.initializer, arrays, strict=True)}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def computes_low(node: onnx.NodeProto) -> bool:
        if node.op_type == "Constant":  # a float constant follows what consumes it
            return all(computes_low(c) for c in consumers.get(node.output[0], []))
        return node.op_type not in FP32_OPS

    # the element type of every value: float32 ones may become low
    kind: dict[str, int] = {t.name: t.data_type for t in g.initializer}
    for name, (t, a) in inits.items():  # weights used only by low ops are stored low
        users = consumers.get(name, [])
        if t.data_type == TensorProto.FLOAT and users and all(map(computes_low, users)):
            t.data_type = low
            kind[name] = low
            inits[name] = (t, _low_array(a, dtype))
    kind[INPUT_NAME] = TensorProto.FLOAT if keep_io_types else low
    if not keep_io_types:
        g.input[0].type.tensor_type.elem_type = low

    nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(value: str, to: int) -> str:
        key = (value, to)
        if key not in casts:
            suffix = "fp32" if to == TensorProto.FLOAT else dtype
            out = f"{value}.{suffix}"
            nodes.append(helper.make_node("Cast", [value], [out], name=f"{value}.to_{suffix}",
                                          to=to))
            kind[out] = to
            casts[key] = out
        return casts[key]

    for node in g.node:
        want = low if computes_low(node) else TensorProto.FLOAT
        for i, name in enumerate(node.input):
            have = kind.get(name)
            if name and have in (TensorProto.FLOAT, low) and have != want:
                node.input[i] = cast(name, want)
        const = _constant_float(node)
        if const is not None and want == low:
            data = onnx.numpy_helper.to_array(const.t)
            const.t.CopyFrom(_low_tensor(data, dtype, const.t.name))
        if node.op_type == "Shape":
            kind[node.output[0]] = TensorProto.INT64
        else:
            for out in node.output:
                kind[out] = want
        nodes.append(node)

    if kind[OUTPUT_NAME] == low:
        if keep_io_types:  # the last op writes `logits.low`, a Cast makes fp32 `logits`
            inner = f"{OUTPUT_NAME}.{dtype}"
            for node in nodes:
                node.output[:] = [inner if o == OUTPUT_NAME else o for o in node.output]
            nodes.append(helper.make_node("Cast", [inner], [OUTPUT_NAME],
                                          name=f"{OUTPUT_NAME}.to_fp32", to=TensorProto.FLOAT))
        else:
            g.output[0].type.tensor_type.elem_type = low
    del g.node[:]
    g.node.extend(nodes)
    for vi in g.value_info:
        if vi.name in kind:
            vi.type.tensor_type.elem_type = kind[vi.name]
    return [inits[t.name][1] for t in g.initializer]


def _low_tensor(data: np.ndarray, dtype: str, name: str) -> TensorProto:
    t = TensorProto()
    t.name = name
    t.dims.extend(data.shape)
    t.data_type = LOW_TYPES[dtype]
    t.raw_data = _low_array(np.asarray(data, dtype=np.float32), dtype).tobytes()
    return t
