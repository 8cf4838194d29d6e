"""ONNX emitter: builds the model straight from the graph with the `onnx` package (no torch).

Node and initializer names are the graph's node ids (`layer1.0.conv1`, `layer1.0.conv1.weight`),
so the file reads like the PyTorch module it mirrors. Conv+BatchNorm pairs are folded by default
(in float64, then cast to float32); every intermediate value carries its shape as value_info so
ONNX shape inference can be compared with the graph. The output is a pure function of the graph
and the weights: the same inputs give a byte-identical file.

Versions: onnx 1.23 writes IR version 14 by default, which onnxruntime 1.31 cannot load, so the
model is pinned to IR version 10 and opset 21 by default (both understood by onnxruntime >= 1.20);
opsets 23 to 26 raise the IR version to the lowest that defines them (26 needs 13, the newest
onnxruntime 1.31 loads).

Metadata (model properties, read by `infer`): `spec_name`, `spec_sha256`, `spec_text` (the
normalised spec as JSON; sorted, its sha256 is `spec_sha256`), `preprocessing` (JSON, see
preprocessing.py), `class_names` (a JSON list, when given), `compiler_version`, `bn_folded`, and
`dtype` for fp16 / bf16 files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import UsageError
from ..ops import REGISTRY
from .onnx_builder import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxBuilder,
    folded_norms,
    ordered_inputs,
)

DEFAULT_OPSET = 21
MIN_OPSET = 13
MAX_OPSET = 26  # the newest opset onnxruntime 1.31 runs (tests/test_onnx_opsets.py)
IR_VERSION = 10
DTYPES = ("fp32", "fp16", "bf16")


def check_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"opset {opset}: supported opsets are {MIN_OPSET} to {MAX_OPSET}"
                         f" (default {DEFAULT_OPSET})")
    return opset


def ir_version(opset: int) -> int:
    """IR version 10, or the lowest that defines `opset` (onnxruntime refuses newer ones)."""
    return max(IR_VERSION, helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))


def check_dtype(dtype: str, opset: int | None) -> int:
    """The opset to use for `dtype`: bf16 needs 22 or later, where Conv and pooling take it."""
    from .lowp import BF16_MIN_OPSET
    if dtype not in DTYPES:
        raise UsageError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if dtype == "bf16":
        if opset is None:
            return max(DEFAULT_OPSET, BF16_MIN_OPSET)
        if opset < BF16_MIN_OPSET:
            raise UsageError(f"opset {opset}: bf16 needs opset {BF16_MIN_OPSET} or later (Conv"
                             f" and pooling take bfloat16 from opset 22)")
    return check_opset(opset)


def value_names(graph: nx.DiGraph, fold_bn: bool = True) -> dict[str, str]:
    """The ONNX value that holds each graph node's output (a folded norm shares its conv's value,
    ops that vanish at inference pass their input through, input and output have fixed names)."""
    folds = {norm: conv for conv, norm in folded_norms(graph, fold_bn).items()}
    names: dict[str, str] = {}
    out = graph.graph["output"]
    features = {node: name for name, node in (graph.graph.get("outputs") or {}).items()}
    for node, data in graph.nodes(data=True):
        if REGISTRY[data["op"]].graph_input:
            names[node] = INPUT_NAME
        elif node in features:  # a returned passthrough gets an Identity under its name
            names[node] = features[node]
        elif REGISTRY[data["op"]].onnx_passthrough:
            names[node] = names[ordered_inputs(graph, node)[0]]
        else:
            names[node] = OUTPUT_NAME if node == out else node
            if node in folds:
                names[folds[node]] = names[node]
    return names


def _graph_outputs(b: OnnxBuilder, graph: nx.DiGraph, dynamic_hw: bool) -> list[Any]:
    """The listed feature maps in order (each under its name), then the logits if a head
    remains; batch dynamic unless fixed."""
    gg = graph.graph
    outs = []
    for name, node in (gg.get("outputs") or {}).items():
        if b.value[node] != name:  # a value that passes another through: name it
            b.proto.node.append(helper.make_node("Identity", [b.value[node]], [name], name=name))
        shape = list(graph.nodes[node]["shape"])
        if dynamic_hw and len(shape) == 3:
            shape[1:] = [None, None]
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [b.batch, *shape]))
    if gg["output"] is not None:
        if b.value[gg["output"]] != OUTPUT_NAME:
            raise ValueError(f"the output node {gg['output']} does not produce a value of its own")
        outs.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                                  [b.batch, *graph.nodes[gg["output"]]["shape"]]))
    return outs


def _skeleton(graph: nx.DiGraph, weights: Any, opset: int | None, fold_bn: bool,
              batch: int | None, dynamic_hw: bool = False,
              class_names: Sequence[str] | None = None
              ) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """The model with initializers that carry name, type and dims but no data, and the data
    (little-endian float32 arrays) in initializer order."""
    from ..runtime.weights import as_numpy_state_dict, check_state_dict, init_weights

    opset = check_opset(opset)
    if batch is not None and batch < 1:
        raise UsageError(f"batch {batch}: must be at least 1")
    sd = init_weights(graph) if weights is None else as_numpy_state_dict(weights)
    check_state_dict(graph, sd)
    b = OnnxBuilder(graph, sd, fold_bn, batch, opset, dynamic_hw)
    gg = graph.graph
    for node in graph.nodes:  # insertion order is topological and deterministic
        b.emit(node)
    outs = _graph_outputs(b, graph, dynamic_hw)
    c, h, w = gg["input_shape"]
    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                        [b.batch, c, *(("height", "width") if dynamic_hw else (h, w))])
    model, g = b.model, b.proto
    g.name = gg["name"]
    g.doc_string = f"{gg['name']}: generated by resnet-compiler"
    g.input.append(inp)
    g.output.extend(outs)
    model.ir_version = ir_version(opset)
    model.opset_import.append(helper.make_opsetid("", opset))
    model.producer_name = "resnet-compiler"
    model.producer_version = str(gg["compiler_version"])
    props = {
        "spec_name": str(gg["name"]),
        "spec_sha256": str(gg["spec_sha256"]),
        "spec_text": str(gg["spec_text"]),
        "preprocessing": str(gg["preprocessing"]),
        "compiler_version": str(gg["compiler_version"]),
        "bn_folded": "true" if fold_bn else "false",
    }
    if class_names is not None:
        props["class_names"] = json.dumps(_check_class_names(class_names, gg["num_classes"]))
    helper.set_model_props(model, props)
    return model, b.arrays


def _check_class_names(names: Sequence[str], num_classes: int) -> list[str]:
    out = [str(n) for n in names]
    if isinstance(names, str) or len(out) != num_classes:
        raise UsageError(f"class names: {len(out)} given, the network has {num_classes} classes")
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tag(message: type, field: str) -> bytes:
    """The key of a length-delimited field (wire type 2)."""
    return _varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | 2)


def _serialize(model: onnx.ModelProto, arrays: list[np.ndarray]) -> list[bytes | memoryview]:
    """The serialized model as chunks, weights referenced rather than copied into the proto.

    A protobuf message is the concatenation of its fields in any order, so the model is the
    skeleton without its graph, then the graph field: the graph without initializers followed by
    each initializer (its skeleton plus a raw_data field). Copying 100+ MB of weights into the
    proto and serializing them again would dominate the emission time.
    """
    head = onnx.ModelProto()
    head.CopyFrom(model)
    head.ClearField("graph")
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    del graph.initializer[:]
    parts: list[bytes | memoryview] = [graph.SerializeToString()]
    init_tag, raw_tag = _tag(onnx.GraphProto, "initializer"), _tag(TensorProto, "raw_data")
    for skeleton, data in zip(model.graph.initializer, arrays, strict=True):
        body = skeleton.SerializeToString()
        raw = memoryview(data).cast("B")
        raw_head = raw_tag + _varint(raw.nbytes)
        parts += [init_tag, _varint(len(body) + len(raw_head) + raw.nbytes), body, raw_head, raw]
    size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
    return [head.SerializeToString(), _tag(onnx.ModelProto, "graph"), _varint(size), *parts]


def build_model(graph: nx.DiGraph, weights: Any = None, opset: int | None = None,
                fold_bn: bool = True, batch: int | None = None, dynamic_hw: bool = False,
                dtype: str = "fp32", keep_io_types: bool = True,
                class_names: Sequence[str] | None = None) -> onnx.ModelProto:
    """The ONNX ModelProto for `graph`; the arguments as for `emit_onnx`."""
    model, arrays = _lowered(graph, weights, opset, fold_bn, batch, dynamic_hw, dtype,
                             keep_io_types, class_names)
    for tensor, data in zip(model.graph.initializer, arrays, strict=True):
        tensor.raw_data = data.tobytes()
    return model


def _lowered(graph: nx.DiGraph, weights: Any, opset: int | None, fold_bn: bool,
             batch: int | None, dynamic_hw: bool, dtype: str, keep_io_types: bool,
             class_names: Sequence[str] | None) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """The fp32 skeleton, converted to fp16 / bf16 when asked for."""
    opset = check_dtype(dtype, opset)
    model, arrays = _skeleton(graph, weights, opset, fold_bn, batch, dynamic_hw, class_names)
    if dtype != "fp32":
        from .lowp import convert
        arrays = convert(model, arrays, dtype, keep_io_types)
        helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                       "dtype": dtype})
    return model, arrays


def emit_onnx(graph: nx.DiGraph, weights: Any = None, opset: int | None = None,
              fold_bn: bool = True, batch: int | None = None, dynamic_hw: bool = False,
              dtype: str = "fp32", keep_io_types: bool = True,
              class_names: Sequence[str] | None = None) -> bytes:
    """The serialized ONNX model. `weights`: a state_dict (numpy arrays or torch tensors) or a
    checkpoint path; None gives the seeded initialisation of `weights.init_weights`. `dtype`
    fp16 / bf16 stores weights and computes in that type (see lowp.py), with fp32 input and
    output when `keep_io_types`. `class_names` go into the metadata."""
    return b"".join(_serialize(*_lowered(graph, weights, opset, fold_bn, batch, dynamic_hw,
                                         dtype, keep_io_types, class_names)))


def write_onnx(graph: nx.DiGraph, path: str | os.PathLike[str], weights: Any = None,
               opset: int | None = None, fold_bn: bool = True, batch: int | None = None,
               dynamic_hw: bool = False, dtype: str = "fp32", keep_io_types: bool = True,
               class_names: Sequence[str] | None = None) -> None:
    """Write the ONNX model atomically (nothing is written if anything fails)."""
    from ..outputs import check_output_path, write_atomic

    check_output_path(path)
    write_atomic(path, emit_onnx(graph, weights, opset, fold_bn, batch, dynamic_hw, dtype,
                                 keep_io_types, class_names))
