"""Parameters, MACs and activation memory of each op, computed from attributes and shapes.

MACs count the multiply-accumulates of convolutions and fully connected layers (the convention
behind torchvision's published GFLOPS figures); BatchNorm folds into the preceding convolution at
inference and elementwise ops are negligible, so they count zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import networkx as nx

Shape = tuple[int, ...]


def tensors(op: str, attrs: Mapping[str, Any]) -> dict[str, Shape]:
    """The state_dict entries of one op (relative names), with their shapes."""
    if op == "conv":
        k = attrs["kernel"]
        out = {"weight": (attrs["out_channels"], attrs["in_channels"] // attrs["groups"], k, k)}
        if attrs["bias"]:
            out["bias"] = (attrs["out_channels"],)
        return out
    if op == "bn":
        c = (attrs["channels"],)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c,
                "num_batches_tracked": ()}
    if op == "se":
        c, r = attrs["channels"], attrs["rd_channels"]
        return {"fc1.weight": (r, c, 1, 1), "fc1.bias": (r,), "fc2.weight": (c, r, 1, 1),
                "fc2.bias": (c,)}
    if op == "linear":
        return {"weight": (attrs["out_features"], attrs["in_features"]),
                "bias": (attrs["out_features"],)}
    return {}


def params(op: str, attrs: Mapping[str, Any]) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not parameters)."""
    return sum(math.prod(shape) for name, shape in tensors(op, attrs).items()
               if not name.startswith(("running_", "num_batches")))


def macs(op: str, attrs: Mapping[str, Any], shape: Shape) -> int:
    if op == "conv":
        k = attrs["kernel"]
        return math.prod(shape) * (attrs["in_channels"] // attrs["groups"]) * k * k
    if op == "se":
        return 2 * attrs["channels"] * attrs["rd_channels"]
    if op == "linear":
        return attrs["in_features"] * attrs["out_features"]
    return 0


def annotate(graph: nx.DiGraph) -> None:
    """Add `params`, `macs` and `tensors` to every node and totals to the graph."""
    total_params = total_macs = activations = 0
    for _, data in graph.nodes(data=True):
        op = data["op"]
        data["tensors"] = tensors(op, data)
        data["params"] = params(op, data)
        data["macs"] = macs(op, data, data["shape"])
        total_params += data["params"]
        total_macs += data["macs"]
        activations += math.prod(data["shape"])
    graph.graph["total_params"] = total_params
    graph.graph["total_macs"] = total_macs
    graph.graph["activation_elements"] = activations
