"""ONNX emitter: builds the model straight from the graph with the `onnx` package (no torch).

Node and initializer names are the graph's node ids (`layer1.0.conv1`, `layer1.0.conv1.weight`),
so the file reads like the PyTorch module it mirrors. Conv+BatchNorm pairs are folded by default
(in float64, then cast to float32); every intermediate value carries its shape as value_info so
ONNX shape inference can be compared with the graph. The output is a pure function of the graph
and the weights: the same inputs give a byte-identical file.

Versions: onnx 1.23 writes IR version 14 by default, which onnxruntime 1.31 cannot load, so the
model is pinned to IR version 10 and opset 21 by default (both understood by onnxruntime >= 1.20).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import UsageError

DEFAULT_OPSET = 21
MIN_OPSET = 13
MAX_OPSET = 22
IR_VERSION = 10
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _check_opset(opset: int | None) -> int:
    if opset is None:
        return DEFAULT_OPSET
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"--opset {opset}: supported opsets are {MIN_OPSET} to {MAX_OPSET}"
                         f" (default {DEFAULT_OPSET})")
    return opset


def _inputs(graph: nx.DiGraph, node: str) -> list[str]:
    """Predecessors in argument order (an add's branch before its shortcut)."""
    preds = graph.pred[node]
    return sorted(preds, key=lambda p: preds[p].get("index", 0))


def _foldable_bn(graph: nx.DiGraph, conv: str) -> str | None:
    """The BN that alone consumes this conv's output, if any (only such a pair can fold)."""
    succ = list(graph.successors(conv))
    if len(succ) == 1 and graph.nodes[succ[0]]["op"] == "bn":
        return succ[0]
    return None


def value_names(graph: nx.DiGraph, fold_bn: bool = True) -> dict[str, str]:
    """The ONNX value that holds each graph node's output (a folded BN's conv shares the BN's
    value, dropout passes its input through, the input and output have fixed names)."""
    names: dict[str, str] = {}
    out = graph.graph["output"]
    for node, data in graph.nodes(data=True):
        op = data["op"]
        if op == "input":
            names[node] = INPUT_NAME
        elif op == "dropout":
            names[node] = names[_inputs(graph, node)[0]]
        elif node in names:
            continue
        else:
            bn = _foldable_bn(graph, node) if op == "conv" and fold_bn else None
            value = OUTPUT_NAME if (bn or node) == out else (bn or node)
            names[node] = value
            if bn:
                names[bn] = value
    return names


class _Builder:
    def __init__(self, graph: nx.DiGraph, weights: Mapping[str, np.ndarray], fold_bn: bool,
                 batch: int | None):
        self.g = graph
        self.w = weights
        self.fold_bn = fold_bn
        self.batch: int | str = batch if batch is not None else "batch"
        # built in place: a resnet's weights are 100+ MB, and every proto copy costs time
        self.model = onnx.ModelProto()
        self.proto = self.model.graph
        self.arrays: list[np.ndarray] = []
        self.value: dict[str, str] = {}

    def init(self, name: str, array: np.ndarray) -> str:
        data = np.ascontiguousarray(array, dtype="<f4")
        t = self.proto.initializer.add()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(data.shape)
        self.arrays.append(data)  # the bytes join the file at serialization (see _serialize)
        return name

    def weight(self, key: str) -> np.ndarray:
        return np.asarray(self.w[key])

    def info(self, name: str, shape: tuple[int, ...]) -> None:
        self.proto.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                        [self.batch, *shape]))

    def add(self, op_type: str, name: str, inputs: list[str], output: str,
            shape: tuple[int, ...] | None, **attrs: Any) -> str:
        self.proto.node.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        if shape is not None and output != OUTPUT_NAME:
            self.info(output, shape)
        return output

    # ---- ops ---------------------------------------------------------------------------------
    def conv(self, node: str, d: dict[str, Any], x: str) -> None:
        k, p, s, dil = d["kernel"], d["padding"], d["stride"], d["dilation"]
        weight = self.weight(f"{node}.weight")
        bias = self.weight(f"{node}.bias") if d["bias"] else None
        out, shape = node, d["shape"]
        bn = _foldable_bn(self.g, node) if self.fold_bn else None
        if bn is not None:
            weight, bias = self.folded(bn, weight, bias)
            out = bn
        inputs = [x, self.init(f"{node}.weight", weight)]
        if bias is not None:
            inputs.append(self.init(f"{node}.bias", bias))
        self.value[node] = self.add("Conv", node, inputs, self.name_of(out), shape,
                                    kernel_shape=[k, k], pads=[p, p, p, p], strides=[s, s],
                                    dilations=[dil, dil], group=d["groups"])
        if bn is not None:
            self.value[bn] = self.value[node]

    def folded(self, bn: str, weight: np.ndarray, bias: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Conv weights with the BN folded in, computed in float64 for accuracy."""
        eps = float(self.g.nodes[bn]["eps"])
        gamma, beta, mean, var = (self.weight(f"{bn}.{t}").astype(np.float64)
                                  for t in ("weight", "bias", "running_mean", "running_var"))
        scale = gamma / np.sqrt(var + eps)
        w = np.multiply(weight, scale[:, None, None, None], dtype=np.float64)
        b = bias.astype(np.float64) if bias is not None else np.zeros_like(mean)
        return w.astype(np.float32), ((b - mean) * scale + beta).astype(np.float32)

    def bn(self, node: str, d: dict[str, Any], x: str) -> None:
        inputs = [x] + [self.init(f"{node}.{t}", self.weight(f"{node}.{t}"))
                        for t in ("weight", "bias", "running_mean", "running_var")]
        self.value[node] = self.add("BatchNormalization", node, inputs, self.name_of(node),
                                    d["shape"], epsilon=float(d["eps"]))

    def se(self, node: str, d: dict[str, Any], x: str) -> None:
        """Squeeze-excite as the emitted module computes it: pool, fc1, ReLU, fc2, sigmoid, Mul."""
        c, r = d["channels"], d["rd_channels"]
        y = self.add("GlobalAveragePool", f"{node}.pool", [x], f"{node}.pool", (c, 1, 1))
        for fc, width in (("fc1", r), ("fc2", c)):
            ins = [y, self.init(f"{node}.{fc}.weight", self.weight(f"{node}.{fc}.weight")),
                   self.init(f"{node}.{fc}.bias", self.weight(f"{node}.{fc}.bias"))]
            y = self.add("Conv", f"{node}.{fc}", ins, f"{node}.{fc}", (width, 1, 1),
                         kernel_shape=[1, 1])
            if fc == "fc1":
                y = self.add("Relu", f"{node}.act", [y], f"{node}.act", (r, 1, 1))
        y = self.add("Sigmoid", f"{node}.gate", [y], f"{node}.gate", (c, 1, 1))
        self.value[node] = self.add("Mul", node, [x, y], self.name_of(node), d["shape"])

    def pool(self, node: str, d: dict[str, Any], x: str) -> None:
        k, s, p = d["kernel"], d["stride"], d["padding"]
        attrs: dict[str, Any] = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p],
                                 "ceil_mode": int(d["ceil_mode"])}
        op_type = "MaxPool"
        if d["op"] == "avgpool":
            op_type = "AveragePool"
            attrs["count_include_pad"] = int(d["count_include_pad"])
        self.value[node] = self.add(op_type, node, [x], self.name_of(node), d["shape"], **attrs)

    def name_of(self, node: str) -> str:
        return OUTPUT_NAME if node == self.g.graph["output"] else node

    def emit(self, node: str) -> None:
        d = self.g.nodes[node]
        op = d["op"]
        if node in self.value:  # a BN already folded into its conv
            return
        xs = [self.value[p] for p in _inputs(self.g, node)]
        simple = {"relu": "Relu", "add": "Add", "flatten": "Flatten"}
        if op == "conv":
            self.conv(node, d, xs[0])
        elif op == "bn":
            self.bn(node, d, xs[0])
        elif op == "se":
            self.se(node, d, xs[0])
        elif op in ("maxpool", "avgpool"):
            self.pool(node, d, xs[0])
        elif op in simple:
            attrs = {"axis": 1} if op == "flatten" else {}
            self.value[node] = self.add(simple[op], node, xs, self.name_of(node), d["shape"],
                                        **attrs)
        elif op == "global_pool":
            op_type = "GlobalAveragePool" if d["mode"] == "avg" else "GlobalMaxPool"
            self.value[node] = self.add(op_type, node, xs, self.name_of(node), d["shape"])
        elif op == "dropout":  # identity at inference
            self.value[node] = xs[0]
        elif op == "linear":
            ins = [xs[0], self.init(f"{node}.weight", self.weight(f"{node}.weight")),
                   self.init(f"{node}.bias", self.weight(f"{node}.bias"))]
            self.value[node] = self.add("Gemm", node, ins, self.name_of(node), d["shape"],
                                        transB=1)
        else:
            raise ValueError(f"no ONNX mapping for op {op!r} ({node})")


def _skeleton(graph: nx.DiGraph, weights: Any, opset: int | None, fold_bn: bool,
              batch: int | None) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """The model with initializers that carry name, type and dims but no data, and the data
    (little-endian float32 arrays) in initializer order."""
    from ..weights import as_numpy_state_dict, check_state_dict, init_weights

    opset = _check_opset(opset)
    if batch is not None and batch < 1:
        raise UsageError(f"batch {batch}: must be at least 1")
    sd = init_weights(graph) if weights is None else as_numpy_state_dict(weights)
    check_state_dict(graph, sd)
    b = _Builder(graph, sd, fold_bn, batch)
    gg = graph.graph
    b.value["input"] = INPUT_NAME
    for node in graph.nodes:  # insertion order is topological and deterministic
        if graph.nodes[node]["op"] != "input":
            b.emit(node)
    if b.value[gg["output"]] != OUTPUT_NAME:
        raise ValueError(f"the output node {gg['output']} does not produce a value of its own")
    inp = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                        [b.batch, *gg["input_shape"]])
    out = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                        [b.batch, *graph.nodes[gg["output"]]["shape"]])
    model, g = b.model, b.proto
    g.name = gg["name"]
    g.doc_string = f"{gg['name']}: generated by resnet-compiler"
    g.input.append(inp)
    g.output.append(out)
    model.ir_version = IR_VERSION
    model.opset_import.append(helper.make_opsetid("", opset))
    model.producer_name = "resnet-compiler"
    model.producer_version = str(gg["compiler_version"])
    helper.set_model_props(model, {
        "spec_name": str(gg["name"]),
        "spec_sha256": str(gg["spec_sha256"]),
        "compiler_version": str(gg["compiler_version"]),
        "bn_folded": "true" if fold_bn else "false",
    })
    return model, b.arrays


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
                fold_bn: bool = True, batch: int | None = None) -> onnx.ModelProto:
    """The ONNX ModelProto for `graph`; `weights` as for `emit_onnx`."""
    model, arrays = _skeleton(graph, weights, opset, fold_bn, batch)
    for tensor, data in zip(model.graph.initializer, arrays, strict=True):
        tensor.raw_data = data.tobytes()
    return model


def emit_onnx(graph: nx.DiGraph, weights: Any = None, opset: int | None = None,
              fold_bn: bool = True, batch: int | None = None) -> bytes:
    """The serialized ONNX model. `weights`: a state_dict (numpy arrays or torch tensors) or a
    checkpoint path; None gives the seeded initialisation of `weights.init_weights`."""
    return b"".join(_serialize(*_skeleton(graph, weights, opset, fold_bn, batch)))


def write_onnx(graph: nx.DiGraph, path: str | os.PathLike[str], weights: Any = None,
               opset: int | None = None, fold_bn: bool = True, batch: int | None = None) -> None:
    """Write the ONNX model atomically (nothing is written if anything fails)."""
    from ..outputs import check_output_path, write_atomic

    check_output_path(path)
    write_atomic(path, emit_onnx(graph, weights, opset, fold_bn, batch))
