"""Fitting a pretrained state_dict to a spec's graph before fine-tuning.

A torchvision or timm checkpoint rarely matches a fine-tuning spec exactly: the classifier has the
pretraining's class count and the first convolution its three colour channels. Those two
mismatches have well-known fixes, found here from the graph (no module names are assumed):

- the classifier (the last node with weights before the output) is reset to the network's own
  initialisation when only its class count differs, or when the checkpoint has none;
- the first convolution (the first node with weights after the input) is adapted to the spec's
  input channels: summed for one channel, otherwise repeated to cover the channels and scaled by
  old/new so that activations keep their size (timm's rule for 3-channel weights).

Every other difference is refused by `weights.check_state_dict`, one line naming the keys. Pure
numpy over the graph: no torch needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .messages import format_shape
from .ops import REGISTRY
from .weights import check_state_dict, expected_tensors


@dataclass
class Fitted:
    """A state_dict that fits the graph, and one note per change made to the checkpoint's tensors."""

    state_dict: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)


def _first_weighted(graph: nx.DiGraph, start: str, step: str) -> str | None:
    """The first node with tensors reached from `start` through weightless nodes (breadth-first),
    following successors (`step` 'out') or predecessors ('in')."""
    nxt = graph.successors if step == "out" else graph.predecessors
    seen, queue = {start}, [start]
    while queue:
        node = queue.pop(0)
        if node != start and graph.nodes[node].get("tensors"):
            return node
        for n in nxt(node):
            if n not in seen:
                seen.add(n)
                queue.append(n)
    return None


def classifier_node(graph: nx.DiGraph) -> str | None:
    """The node that produces the logits: the last node with weights before the graph's output,
    when its first weight's leading dimension is the class count."""
    last = graph.graph["output"]
    node = last if graph.nodes[last].get("tensors") else _first_weighted(graph, last, "in")
    if node is None:
        return None
    shapes = list(graph.nodes[node]["tensors"].values())
    return node if shapes and shapes[0] and shapes[0][0] == graph.graph["num_classes"] else None


def first_conv_node(graph: nx.DiGraph) -> str | None:
    """The convolution that reads the input image (None when the first weighted op is no plain,
    ungrouped convolution)."""
    node = _first_weighted(graph, "input", "out")
    if node is None:
        return None
    data = graph.nodes[node]
    if REGISTRY[data["op"]].role != "conv" or data.get("groups", 1) != 1 or "weight" not in data["tensors"]:
        return None
    return node


def adapt_input_conv(weight: np.ndarray, channels: int) -> np.ndarray:
    """A conv weight (out, in, kh, kw) for `channels` input channels: the sum over input channels
    for one; otherwise the weight repeated along input channels to cover `channels`, cut there and
    scaled by in/channels (for in = 3: timm's `repeat(1, ceil(c/3), 1, 1)[:, :c] * (3 / c)`)."""
    w = np.asarray(weight)
    have = w.shape[1]
    if channels == 1:
        return w.sum(axis=1, keepdims=True, dtype=w.dtype)
    reps = math.ceil(channels / have)
    out = np.tile(w, (1, reps, 1, 1))[:, :channels] * np.asarray(have / channels, dtype=w.dtype)
    return out.astype(w.dtype, copy=False)


def _differs_only_in(have: tuple[int, ...], want: tuple[int, ...], axis: int) -> bool:
    return (len(have) == len(want) and have != want
            and all(a == b for i, (a, b) in enumerate(zip(have, want, strict=True)) if i != axis))


def fit_state_dict(graph: nx.DiGraph, sd: Mapping[str, np.ndarray],
                   fresh: Mapping[str, np.ndarray]) -> Fitted:
    """`sd` adapted to `graph`: first conv adapted to the input channels, classifier taken from
    `fresh` (the network's own initial values) when its class count differs or it is absent.
    Raises UsageError (weights.check_state_dict) for any other mismatch."""
    expected = expected_tensors(graph)
    out = dict(sd)
    notes: list[str] = []
    conv = first_conv_node(graph)
    key = f"{conv}.weight"
    if conv is not None and key in out and _differs_only_in(tuple(out[key].shape), expected[key], 1):
        old = out[key].shape[1]
        out[key] = adapt_input_conv(out[key], expected[key][1])
        how = "summed over input channels" if expected[key][1] == 1 else (
            f"repeated along input channels, scaled by {old}/{expected[key][1]}")
        notes.append(f"{key} adapted from {old} to {expected[key][1]} input channels ({how})")
    head = classifier_node(graph)
    if head is not None:
        keys = [f"{head}.{rel}" for rel in graph.nodes[head]["tensors"]]
        if all(k not in out for k in keys):
            out.update({k: fresh[k] for k in keys})
            notes.append(f"classifier {', '.join(keys)} not in the checkpoint: initialised afresh "
                         f"for {graph.graph['num_classes']} classes")
        elif all(k in out for k in keys) and any(tuple(out[k].shape) != expected[k] for k in keys) and all(
                _differs_only_in(tuple(out[k].shape), expected[k], 0) or tuple(out[k].shape) == expected[k]
                for k in keys):
            old = format_shape(out[keys[0]].shape[:1])
            out.update({k: fresh[k] for k in keys})
            notes.append(f"classifier {', '.join(keys)} reset: the checkpoint has {old} classes, the "
                         f"spec {graph.graph['num_classes']}")
    check_state_dict(graph, out)
    return Fitted(out, notes)
