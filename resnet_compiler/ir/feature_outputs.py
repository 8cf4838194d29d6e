"""`outputs:`: the module paths the model's forward returns, as graph nodes.

A part of the expander (ir/expand.py), which mixes the parts together."""

from __future__ import annotations

from ..messages import did_you_mean
from .templates import owning_block


class FeatureOutputs:
    def feature_outputs(self, pre_ops: int) -> dict[str, str]:
        """`outputs:` as name -> node id. A name is a module path the model's forward passes
        through: a stem or head.pre op (or a container of them), a stage, a block (`layer2.1`)
        or the node that ends a block (`layer2.1.relu`)."""
        if not self.spec.outputs:
            return {}
        visible: dict[str, str] = {}

        def see(path: str, node: str) -> None:
            parts = path.split(".")
            for k in range(1, len(parts) + 1):
                visible[".".join(parts[:k])] = node  # a container means its last module's output

        for top in self.layout.stem:
            see(top.node_id, top.out_node)
        block_of = {b.id: stage for stage in self.layout.stages for b in stage.blocks}
        ends: dict[str, str] = {}
        for node in self.nodes:
            block = owning_block(node, block_of)
            if block:
                ends[block] = node
        for stage in self.layout.stages:
            for b in stage.blocks:
                see(b.id, ends[b.id])
                visible[ends[b.id]] = ends[b.id]
        for top in self.layout.head[:pre_ops]:
            see(top.node_id, top.out_node)
        head = {top.node_id for top in self.layout.head[pre_ops:]}
        order = {node: i for i, node in enumerate(self.nodes)}
        out: dict[str, str] = {}
        taken: dict[str, str] = {}
        for i, name in enumerate(self.spec.outputs or ()):
            where = ("outputs", i)
            node = visible.get(name)
            if node is None:
                inside = next((b for b in ends if name.startswith(b + ".")), None)
                if name in head or any(h.startswith(name + ".") for h in head):
                    why = "is part of the head (pool and classifier); the logits come last anyway"
                elif inside is not None and name in self.nodes:
                    why = (f"is inside block {inside}, whose forward hides it; name the block"
                           f" ({inside}) or its stage")
                else:
                    why = f"is no stage, block or stem op{did_you_mean(name, list(visible))}"
                raise self.error(where, f"{name!r} {why}")
            if node in taken:
                raise self.error(where, f"{name!r} is the same feature map as {taken[node]!r}")
            if name == "logits" and self.layout.head:
                raise self.error(where, "'logits' names the classifier's output; choose another")
            if out and order[node] < order[out[previous := list(out)[-1]]]:
                raise self.error(where, f"{name!r} comes before {previous!r} in the network; list"
                                 " outputs in the order the network computes them")
            taken[node] = name
            out[name] = node
        return out
