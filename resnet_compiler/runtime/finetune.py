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

from ..ops import REGISTRY
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


def _adapt_first_conv(graph: nx.DiGraph, sd: dict[str, np.ndarray],
                      expected: Mapping[str, tuple[int, ...]]) -> str | None:
    """Adapt the first conv's weight in `sd` when only its input channels differ; the note, or None."""
    conv = first_conv_node(graph)
    key = f"{conv}.weight"
    if conv is None or key not in sd or not _differs_only_in(tuple(sd[key].shape), expected[key], 1):
        return None
    old, new = sd[key].shape[1], expected[key][1]
    sd[key] = adapt_input_conv(sd[key], new)
    how = ("summed over input channels" if new == 1
           else f"repeated along input channels, scaled by {old}/{new}")
    return f"{key} adapted from {old} to {new} input channels ({how})"


def _reset_classifier(graph: nx.DiGraph, sd: dict[str, np.ndarray], expected: Mapping[str, tuple[int, ...]],
                      fresh: Mapping[str, np.ndarray]) -> str | None:
    """Take the classifier from `fresh` when `sd` has none, or one that differs only in its class
    count; the note, or None."""
    head = classifier_node(graph)
    if head is None:
        return None
    keys = [f"{head}.{rel}" for rel in graph.nodes[head]["tensors"]]
    classes = graph.graph["num_classes"]
    if all(k not in sd for k in keys):
        sd.update({k: fresh[k] for k in keys})
        return f"classifier {', '.join(keys)} not in the checkpoint: initialised afresh for {classes} classes"
    if not all(k in sd for k in keys):
        return None
    shapes = [tuple(sd[k].shape) for k in keys]
    wanted = [expected[k] for k in keys]
    if shapes == wanted or not all(have == want or _differs_only_in(have, want, 0)
                                   for have, want in zip(shapes, wanted, strict=True)):
        return None
    old = shapes[0][0] if shapes[0] else "?"
    sd.update({k: fresh[k] for k in keys})
    return f"classifier {', '.join(keys)} reset: the checkpoint has {old} classes, the spec {classes}"


def fit_state_dict(graph: nx.DiGraph, sd: Mapping[str, np.ndarray],
                   fresh: Mapping[str, np.ndarray]) -> Fitted:
    """`sd` adapted to `graph`: first conv adapted to the input channels, classifier taken from
    `fresh` (the network's own initial values) when its class count differs or it is absent.
    Raises UsageError (weights.check_state_dict) for any other mismatch."""
    expected = expected_tensors(graph)
    out = dict(sd)
    changes = (_adapt_first_conv(graph, out, expected), _reset_classifier(graph, out, expected, fresh))
    notes = [n for n in changes if n is not None]
    check_state_dict(graph, out)
    return Fitted(out, notes)
