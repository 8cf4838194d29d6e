"""The graph IR as plain dicts in networkx's own layout (`_node`, `_succ`, `_pred`), so that
`--check` needs no networkx import (a sixth of a start-up) while `CompiledNetwork.graph` is a
real `networkx.DiGraph` over the same dicts, made on first use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networkx as nx


class _Nodes:
    """What `graph.nodes` offers: iteration in order, `nodes[n]`, `nodes(data=True)`."""

    def __init__(self, data: dict[str, dict[str, Any]]):
        self._data = data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, node: object) -> bool:
        return node in self._data

    def __getitem__(self, node: str) -> dict[str, Any]:
        return self._data[node]

    def __call__(self, data: bool = False) -> Iterator[Any]:
        return iter(self._data.items()) if data else iter(self._data)


class IRGraph:
    """Nodes (ids to attribute dicts, in order), edges producer -> consumer with their
    attribute dicts, and the graph's own attributes."""

    def __init__(self, nodes: dict[str, dict[str, Any]],
                 edges: list[tuple[str, str, dict[str, Any]]], attrs: dict[str, Any]):
        self.graph = attrs
        self._node = nodes
        self._succ: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in nodes}
        self._pred: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in nodes}
        for u, v, data in edges:
            self._succ[u][v] = data
            self._pred[v][u] = data

    @property
    def nodes(self) -> _Nodes:
        return _Nodes(self._node)

    @property
    def pred(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self._pred

    @property
    def succ(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self._succ

    def to_networkx(self) -> nx.DiGraph:
        """A networkx.DiGraph over these dicts. The dicts go into its adjacency structure as
        they are: add_nodes_from/add_edges_from copy and re-check every entry, which was a third
        of compiling a ResNet-152, and the expander guarantees what they check."""
        import networkx as nx
        g = nx.DiGraph()
        g.graph.update(self.graph)
        if not all(hasattr(g, a) for a in ("_node", "_succ", "_pred")):  # another layout
            g.add_nodes_from(self._node.items())
            g.add_edges_from((u, v, d) for u, adj in self._succ.items() for v, d in adj.items())
            return g
        g._node, g._succ, g._pred = self._node, self._succ, self._pred
        g._adj = g._succ  # DiGraph keeps both names for the successors
        return g
