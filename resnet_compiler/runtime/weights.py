"""Weights as plain numpy state_dicts: safe checkpoint loading, checking against a graph, and a
seeded initialisation.

Checkpoints are read with safetensors or `torch.load(weights_only=True)`, never by unpickling
arbitrary objects; torch is imported only when a `.pt`/`.pth` file or torch tensors are given.
Keys are the graph's node ids plus each node's `tensors` (`layer1.0.conv1.weight`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from ..errors import UsageError
from ..messages import first_line, format_shape
from ..ops import REGISTRY, InitOptions

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
MAX_LISTED = 6


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    t = value.detach().cpu()
    if t.is_floating_point() and str(t.dtype) not in ("torch.float32", "torch.float64"):
        t = t.float()  # bfloat16 has no numpy dtype; float16 is widened for the same path
    return t.numpy()


def _state_dict(obj: Any, where: str) -> dict[str, np.ndarray]:
    """Unwrap a training checkpoint and insist on a mapping of str -> tensor."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise UsageError(f"{where}: not a state_dict (found {type(obj).__name__}); expected a "
                         "mapping of parameter names to tensors")
    bad = [str(k) for k, v in obj.items()
           if not isinstance(k, str) or not (isinstance(v, np.ndarray) or _is_torch_tensor(v))]
    if bad:
        raise UsageError(f"{where}: not a state_dict: {_listing(bad)} "
                         f"{'is' if len(bad) == 1 else 'are'} not tensors")
    if not obj:
        raise UsageError(f"{where}: the state_dict is empty")
    return {k: _to_numpy(v) for k, v in obj.items()}


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A state_dict from `.safetensors`, or from a torch checkpoint loaded with weights_only."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such checkpoint file")
    if not p.is_file():
        raise UsageError(f"{p}: not a file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{p}: cannot read the checkpoint: permission denied")
    if p.suffix == ".safetensors":
        from safetensors.numpy import load_file
        try:
            return _state_dict(load_file(str(p)), str(p))
        except UsageError:
            raise
        except Exception as e:
            raise UsageError(f"{p}: not a readable safetensors file ({first_line(e)})") from None
    import pickle

    import torch
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)|[Uu]nsupported class ([\w.]+)", str(e))
        if not found:  # the unpickler stopped on bytes that are no pickle: a corrupt file
            raise UsageError(f"{p}: cannot read the checkpoint (not a valid torch checkpoint)"
                             ) from None
        what = found.group(1) or found.group(2)
        raise UsageError(f"{p}: the checkpoint holds an object ({what}) besides tensors and "
                         "plain containers; refusing to unpickle it (save a state_dict, or use "
                         ".safetensors)") from None
    except Exception as e:
        raise UsageError(f"{p}: cannot read the checkpoint ({type(e).__name__}: "
                         f"{first_line(e)})") from None
    return _state_dict(obj, str(p))


def as_numpy_state_dict(weights: Any) -> dict[str, np.ndarray]:
    """A checkpoint path, or a mapping of names to torch tensors / numpy arrays, as numpy."""
    if isinstance(weights, (str, os.PathLike)):
        return load_checkpoint(weights)
    return _state_dict(weights, "weights")


def expected_tensors(graph: nx.DiGraph) -> dict[str, tuple[int, ...]]:
    """The state_dict keys and shapes the graph's modules have, in graph order."""
    return {f"{node}.{rel}": tuple(shape) for node, data in graph.nodes(data=True)
            for rel, shape in data.get("tensors", {}).items()}


def _listing(names: list[str]) -> str:
    """Names for a one-line message: a name from a file that holds a line break or another
    unprintable character is shown as its repr."""
    shown = ", ".join(n if n.isprintable() else repr(n) for n in names[:MAX_LISTED])
    return shown + (f" (and {len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else "")


def check_state_dict(graph: nx.DiGraph, sd: Mapping[str, np.ndarray]) -> None:
    """Raise UsageError naming missing, unexpected and mis-shaped keys (num_batches_tracked,
    unused at inference, may be absent)."""
    expected = expected_tensors(graph)
    missing = [k for k in expected if k not in sd and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    misshaped = [f"{k} (checkpoint {format_shape(tuple(sd[k].shape))}, network {format_shape(shape)})"
                 for k, shape in expected.items() if k in sd and tuple(sd[k].shape) != shape]
    not_float = [k for k, shape in expected.items() if k in sd and not k.endswith(
        ".num_batches_tracked") and not np.issubdtype(np.asarray(sd[k]).dtype, np.floating)]
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected),
                         ("mis-shaped", misshaped), ("not floating point", not_float)):
        if names:
            parts.append(f"{len(names)} {label}: {_listing(names)}")
    if parts:
        raise UsageError(f"the weights do not fit the network {graph.graph['name']!r}: " + "; ".join(parts))
    broken = [f"{k} ({what})" for k in expected if k in sd for what in [_non_finite(sd[k])] if what]
    if broken:
        raise UsageError(f"the weights hold NaN or infinite values in {len(broken)} "
                         f"tensor{'s' if len(broken) > 1 else ''}: {_listing(broken)}; a network "
                         "cannot compute with them (was the training run diverging?)")


def _non_finite(value: np.ndarray) -> str:
    """'3 NaN, 1 inf' for a float tensor with such values, '' for a finite one."""
    a = np.asarray(value)
    if not np.issubdtype(a.dtype, np.floating) or np.isfinite(a).all():
        return ""
    nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    return ", ".join(f"{n} {label}" for n, label in ((nan, "NaN"), (inf, "inf")) if n)


def init_weights(graph: nx.DiGraph, seed: int = 0, realistic_bn: bool = False
                 ) -> dict[str, np.ndarray]:
    """A seeded state_dict initialised like the emitted code (each op's own rule: kaiming-normal
    fan_out convs, PyTorch's default uniform for biases and the classifier). `realistic_bn` gives
    norms non-trivial statistics, so eval-mode activations stay bounded in deep networks."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}
    for node, data in graph.nodes(data=True):
        tensors = data.get("tensors")
        if not tensors:
            continue
        options = InitOptions(realistic_norm=realistic_bn,
                              zero_gamma=not realistic_bn and bool(data.get("zero_init")))
        values = REGISTRY[data["op"]].init(data, tensors, rng, options)
        sd.update({f"{node}.{rel}": values[rel] for rel in tensors})
    return sd
