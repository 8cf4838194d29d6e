"""The object an op's ONNX lowering writes into: nodes, initializers, value shapes, and the
weights it reads. Ops call `add`, `init` and `weight`; the builder keeps names and shapes
consistent (a node's output is named after the graph node, the network output is `logits`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper

from ..ops import REGISTRY

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def folded_norms(graph: nx.DiGraph, fold: bool) -> dict[str, str]:
    """conv -> the norm that alone consumes its output and can fold into its weights."""
    if not fold:
        return {}
    out = {}
    returned = set((graph.graph.get("outputs") or {}).values())  # a returned conv keeps its value
    for node, data in graph.nodes(data=True):
        if REGISTRY[data["op"]].role != "conv" or node in returned:
            continue
        succ = list(graph.successors(node))
        if len(succ) == 1 and REGISTRY[graph.nodes[succ[0]]["op"]].folds_into_conv:
            out[node] = succ[0]
    return out


def ordered_inputs(graph: nx.DiGraph, node: str) -> list[str]:
    """Predecessors in argument order (an add's branch before its shortcut)."""
    preds = graph.pred[node]
    return sorted(preds, key=lambda p: preds[p].get("index", 0))


def input_ports(graph: nx.DiGraph, node: str) -> list[tuple[str, int | None]]:
    """Every argument in order as (predecessor, split part or None); an edge whose source is
    read more than once lists its uses."""
    args = []
    for pred, edge in graph.pred[node].items():
        for index, part in edge.get("uses", [[edge.get("index", 0), edge.get("part")]]):
            args.append((index, pred, part))
    return [(pred, part) for _, pred, part in sorted(args, key=lambda a: a[0])]


class OnnxBuilder:
    input_name = INPUT_NAME

    def __init__(self, graph: nx.DiGraph, weights: Mapping[str, np.ndarray], fold_bn: bool,
                 batch: int | None, opset: int, dynamic_hw: bool = False):
        self.g = graph
        self.dynamic_hw = dynamic_hw  # height and width symbolic: feature-map sizes left unnamed
        self.opset = opset  # ops lower to what this opset has
        self.w = weights
        self.batch: int | str = batch if batch is not None else "batch"
        self.folds = folded_norms(graph, fold_bn)
        # built in place: a resnet's weights are 100+ MB, and every proto copy costs time
        self.model = onnx.ModelProto()
        self.proto = self.model.graph
        self.arrays: list[np.ndarray] = []
        self.value: dict[str, str] = {}
        self.aliases: dict[str, str] = {}  # a folded norm -> the conv whose output it shares
        # returned feature maps: node -> the graph output's name (the name under `outputs:`)
        self.features = {node: name for name, node in (graph.graph.get("outputs") or {}).items()}

    def init(self, name: str, array: np.ndarray) -> str:
        """An fp32 initializer; its bytes join the file at serialization."""
        data = np.ascontiguousarray(array, dtype="<f4")
        t = self.proto.initializer.add()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(data.shape)
        self.arrays.append(data)
        return name

    def weight(self, key: str) -> np.ndarray:
        return np.asarray(self.w[key])

    def const(self, name: str, array: np.ndarray, dtype: str = "<f4") -> str:
        """A constant input that is not a state_dict entry (a shape, an axis list, a fixed
        filter); int64 arrays for shapes and axes. A 0-d array stays a scalar."""
        data = np.array(array, dtype=dtype, order="C")
        t = self.proto.initializer.add()
        t.name = name
        t.data_type = TensorProto.INT64 if data.dtype == np.int64 else TensorProto.FLOAT
        t.dims.extend(data.shape)
        self.arrays.append(data)
        return name

    def output_name(self, node: str) -> str:
        return OUTPUT_NAME if node == self.g.graph["output"] else self.features.get(node, node)

    def add(self, op_type: str, name: str, inputs: list[str], out_node: str,
            shape: tuple[int, ...] | None = None, **attrs: Any) -> str:
        """Append one ONNX node named `name` whose output is `out_node`'s value."""
        output = self.output_name(out_node)
        self.proto.node.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))
        if shape is None and out_node in self.g:
            shape = self.g.nodes[out_node]["shape"]
        if shape is not None and output != OUTPUT_NAME and output not in self.features.values():
            self.value_info(output, shape)
        return output

    def value_info(self, name: str, shape: tuple[int, ...]) -> None:
        """Record a value's shape (batch first; spatial sizes unnamed in an any-size file)."""
        dims: list[Any] = [self.batch, *shape]
        if self.dynamic_hw and len(shape) >= 2:  # the spatial sizes, or a grouping of them
            dims[2:] = [None] * (len(shape) - 1)
        self.proto.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))

    def fold_following_norm(self, conv: str, weight: np.ndarray, bias: np.ndarray | None
                            ) -> tuple[np.ndarray, np.ndarray | None, str]:
        """Weight and bias with the following norm folded in (when it folds), and the node whose
        value the conv then produces."""
        norm = self.folds.get(conv)
        if norm is None:
            return weight, bias, conv
        data = self.g.nodes[norm]
        w, b = REGISTRY[data["op"]].fold_into_conv(self, norm, data, weight, bias)
        self.aliases[norm] = conv
        return w, b, norm

    def emit(self, node: str) -> None:
        if node in self.aliases:
            self.value[node] = self.value[self.aliases[node]]
            return
        data = self.g.nodes[node]
        inputs = [self.value[p] + ("" if part is None else f"[{part}]")
                  for p, part in input_ports(self.g, node)]
        self.value[node] = REGISTRY[data["op"]].onnx(self, node, data, inputs)
