"""`resnet-compile diff A B`: what changes from one network to another, before any weights exist.

Nodes are matched by module path. A node is changed when its op, an attribute, its output shape
or its inputs differ; derived figures (params, MACs, activations, tensor shapes) are compared as
totals, per stage and per state_dict key, so a changed attribute is reported once, where it was
written. Two specs are equal when their graphs are: the same nodes with the same attributes and
inputs (how the spec was written, its key order or format, does not matter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .compiler import CompiledNetwork

DERIVED = ("params", "macs", "acts", "tensors")


@dataclass
class NetworkDiff:
    a: CompiledNetwork
    b: CompiledNetwork
    added: list[str]
    removed: list[str]
    changed: list[dict[str, Any]]
    stages: list[dict[str, Any]]
    loads: dict[str, Any]

    @property
    def equal(self) -> bool:
        return not (self.added or self.removed or self.changed) and (
            self.a.input_shape == self.b.input_shape)

    def to_json(self) -> dict[str, Any]:
        return {"equal": self.equal, "a": _totals(self.a), "b": _totals(self.b),
                "delta": {"params": self.b.total_params - self.a.total_params,
                          "macs": self.b.total_macs - self.a.total_macs},
                "stages": self.stages, "added": self.added, "removed": self.removed,
                "changed": self.changed, "state_dict": self.loads}

    def format(self) -> str:
        """The plain-text report: totals, stages, then the nodes."""
        a, b = self.a, self.b
        out = [f"A {a.name}: {a.total_params:,} params, {a.total_macs / 1e9:.3f} GMACs",
               f"B {b.name}: {b.total_params:,} params, {b.total_macs / 1e9:.3f} GMACs",
               f"  delta: {_signed(b.total_params - a.total_params)} params, "
               f"{_signed_g(b.total_macs - a.total_macs)} GMACs"]
        if self.equal:
            out.append("equal: the same network")
            return "\n".join(out) + "\n"
        width = max([len(s["name"]) for s in self.stages] + [5])
        out.append(f"{'stage':<{width}}  {'params A':>12}  {'params B':>12}  {'delta':>12}  "
                   f"{'GMACs A':>8}  {'GMACs B':>8}")
        for s in self.stages:
            pa, pb = s["a"]["params"], s["b"]["params"]
            out.append(f"{s['name']:<{width}}  {pa:>12,}  {pb:>12,}  {_signed(pb - pa):>12}  "
                       f"{s['a']['macs'] / 1e9:>8.3f}  {s['b']['macs'] / 1e9:>8.3f}")
        for label, names in (("added", self.added), ("removed", self.removed)):
            if names:
                out.append(f"{label} ({len(names)}): {', '.join(names)}")
        if self.changed:
            out.append(f"changed ({len(self.changed)}):")
            for c in self.changed:
                shown = c["attrs"] if c["op"][0] == c["op"][1] else {
                    k: v for k, v in c["attrs"].items() if k in ("op", "shape", "inputs")}
                attrs = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in shown.items())
                out.append(f"  {c['name']}: {attrs}")
        loads = self.loads
        out.append(f"state_dict: {loads['same_shape']} of A's {loads['a_keys']} keys load into B "
                   f"with the same shape ({loads['other_shape']} with another shape, "
                   f"{loads['missing_in_b']} not in B; B has {loads['b_keys']})")
        return "\n".join(out) + "\n"


def _signed(n: int) -> str:
    return f"{n:+,}"


def _signed_g(n: int) -> str:
    return f"{n / 1e9:+.3f}"


def _totals(net: CompiledNetwork) -> dict[str, Any]:
    return {"name": net.name, "params": net.total_params, "macs": net.total_macs,
            "gmacs": round(net.total_macs / 1e9, 6), "input": list(net.input_shape)}


def _comparable(net: CompiledNetwork, node: str) -> dict[str, Any]:
    data = net.ir.nodes[node]
    out = {k: v for k, v in data.items() if k not in DERIVED}
    out["inputs"] = list(net.ir.pred[node])
    return out


def _stage_figures(net: CompiledNetwork) -> dict[str, dict[str, int]]:
    out = {}
    for stage in net.layout.stages:
        prefix = stage.name + "."
        params = macs = 0
        for node, data in net.ir.nodes(data=True):
            if node.startswith(prefix):
                params += data.get("params", 0)
                macs += data.get("macs", 0)
        out[stage.name] = {"params": params, "macs": macs, "blocks": len(stage.blocks)}
    return out


def _state_dict(net: CompiledNetwork) -> dict[str, tuple[int, ...]]:
    return {f"{node}.{rel}": tuple(shape) for node, data in net.ir.nodes(data=True)
            for rel, shape in data.get("tensors", {}).items()}


def diff(a: CompiledNetwork, b: CompiledNetwork) -> NetworkDiff:
    nodes_a, nodes_b = list(a.ir.nodes), list(b.ir.nodes)
    in_a, in_b = set(nodes_a), set(nodes_b)
    changed = []
    for node in nodes_a:
        if node not in in_b:
            continue
        before, after = _comparable(a, node), _comparable(b, node)
        if before != after:
            keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
            changed.append({"name": node, "op": [before.get("op"), after.get("op")],
                            "attrs": {k: [_plain(before.get(k)), _plain(after.get(k))]
                                      for k in keys}})
    sa, sb = _stage_figures(a), _stage_figures(b)
    zero = {"params": 0, "macs": 0, "blocks": 0}
    stages = [{"name": name, "a": sa.get(name, zero), "b": sb.get(name, zero),
               "delta": {k: sb.get(name, zero)[k] - sa.get(name, zero)[k] for k in zero}}
              for name in [*sa, *(n for n in sb if n not in sa)]]
    ka, kb = _state_dict(a), _state_dict(b)
    same = [k for k, shape in ka.items() if kb.get(k) == shape]
    loads = {"a_keys": len(ka), "b_keys": len(kb), "same_shape": len(same),
             "other_shape": sum(1 for k, s in ka.items() if k in kb and kb[k] != s),
             "missing_in_b": sum(1 for k in ka if k not in kb),
             "not_loaded": [k for k in ka if kb.get(k) != ka[k]]}
    return NetworkDiff(a, b, [n for n in nodes_b if n not in in_a],
                       [n for n in nodes_a if n not in in_b], changed, stages, loads)


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
