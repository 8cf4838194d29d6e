"""A layered drawing of one block's ops (or the stem's, or the head's), computed in Python.

Blocks are small DAGs (a dozen ops, some forty in a selective-kernel or split-attention block),
so a plain Sugiyama layout serves: layers by longest path from the block's inputs, a dummy point
wherever an edge crosses a layer, a few barycenter sweeps to order each layer, then x positions
pulled toward the neighbours' and pushed apart. Paths of a multi-path block therefore sit side by
side and the shortcut runs beside the branch it meets at the add. Blocks with the same wiring
share one drawing (`layout_of` caches by topology), so a 1,000-block network lays out a handful
of graphs, and the page only places boxes and draws edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

NODE_W, NODE_H = 200, 50  # an op's box (the page's CSS uses the same numbers)
INPUT_W, INPUT_H = 200, 22  # a block input's tag
DUMMY_W = 24  # the room an edge takes where it crosses a layer
GAP_X, GAP_Y = 28, 46  # between boxes side by side; between layers (edge labels sit there)
SWEEPS = 6



@dataclass(frozen=True)
class Drawing:
    """Coordinates (top-left corners, pixels) of each input tag and op box, and each edge as
    the points it runs through (source bottom, dummy points, target top)."""

    width: int
    height: int
    inputs: tuple[tuple[int, int], ...]
    nodes: tuple[tuple[int, int], ...]
    edges: tuple[tuple[int, int, tuple[tuple[int, int], ...]], ...]

    def to_json(self) -> list:
        return [self.width, self.height, [list(p) for p in self.inputs],
                [list(p) for p in self.nodes],
                [[s, t, [c for p in pts for c in p]] for s, t, pts in self.edges]]


def layout_of(n_inputs: int, n_nodes: int, edges: Sequence[tuple[int, int]]) -> Drawing:
    """The drawing of `n_nodes` ops in topological order, fed by `n_inputs` outside values;
    `edges` run (source, target), a source being an op (>= 0) or input k (-(k + 1))."""
    return _layout((n_inputs, n_nodes), tuple(edges))


@lru_cache(maxsize=256)
def _layout(sizes: tuple[int, int], edges: tuple[tuple[int, int], ...]) -> Drawing:
    n_in, n = sizes
    # vertices: inputs 0..n_in-1, ops n_in..n_in+n-1, then dummies
    def vid(src: int) -> int:
        return -src - 1 if src < 0 else n_in + src

    layer = [0] * (n_in + n)
    preds: list[list[int]] = [[] for _ in range(n_in + n)]
    for s, t in edges:
        preds[vid(t)].append(vid(s))
    for v in range(n_in, n_in + n):  # ops come in topological order
        layer[v] = 1 + max((layer[p] for p in preds[v]), default=0)
    width = [INPUT_W] * n_in + [NODE_W] * n
    # split long edges into unit steps through dummies
    chains: list[tuple[int, int, list[int]]] = []
    up: list[list[int]] = [[] for _ in range(n_in + n)]
    down: list[list[int]] = [[] for _ in range(n_in + n)]
    for s, t in edges:
        a, b = vid(s), vid(t)
        path = [a]
        for lay in range(layer[a] + 1, layer[b]):
            d = len(layer)
            layer.append(lay)
            width.append(DUMMY_W)
            up.append([])
            down.append([])
            path.append(d)
        path.append(b)
        for u, v in zip(path, path[1:], strict=False):
            down[u].append(v)
            up[v].append(u)
        chains.append((s, t, path))
    depth = max(layer) + 1 if layer else 1
    rows: list[list[int]] = [[] for _ in range(depth)]
    for v in range(len(layer)):  # creation order: branch before shortcut, real before dummy
        rows[layer[v]].append(v)
    order = _order(rows, up, down)
    x = _place(rows, order, up, down, width, n_in + n)
    left = min((x[v] - width[v] / 2 for v in range(len(layer))), default=0)
    top = [0] * depth  # layer 0 holds the inputs' tags (nothing when there are none)
    for i in range(1, depth):
        top[i] = top[i - 1] + (NODE_H if i > 1 else INPUT_H if n_in else -GAP_Y) + GAP_Y

    def height_of(v: int) -> int:
        return INPUT_H if v < n_in else (NODE_H if v < n_in + n else 0)

    lefts = [round(x[v] - width[v] / 2 - left) for v in range(len(layer))]  # whole pixels

    def corner(v: int) -> tuple[int, int]:
        return (lefts[v], top[layer[v]])

    right = max((lefts[v] + width[v] for v in range(len(layer))), default=NODE_W)
    bottom = max((top[layer[v]] + height_of(v) for v in range(n_in + n)), default=NODE_H)
    out_edges = []
    for s, t, path in chains:
        pts = []
        for i, v in enumerate(path):
            cx = lefts[v] + width[v] // 2
            y = top[layer[v]]
            if i == 0:
                pts.append((cx, y + height_of(v)))
            elif i == len(path) - 1:
                pts.append((cx, y))
            else:  # a dummy: pass through its layer's band
                pts += [(cx, y), (cx, y + NODE_H)]
        out_edges.append((s, t, tuple(pts)))
    return Drawing(int(right), int(bottom), tuple(corner(v) for v in range(n_in)),
                   tuple(corner(v) for v in range(n_in, n_in + n)), tuple(out_edges))


def _order(rows: list[list[int]], up: list[list[int]], down: list[list[int]]) -> list[int]:
    """Each vertex's place in its layer after barycenter sweeps (stable: ties keep the order of
    creation, so the branch stays left of the shortcut)."""
    pos = [0] * len(up)
    for row in rows:
        for i, v in enumerate(row):
            pos[v] = i
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        seq = rows[1:] if downward else rows[-2::-1]
        near = up if downward else down
        for row in seq:
            bary = {v: sum(pos[u] for u in near[v]) / len(near[v]) if near[v] else pos[v]
                    for v in row}
            row.sort(key=lambda v: (bary[v], pos[v]))
            for i, v in enumerate(row):
                pos[v] = i
    return pos


def _place(rows: list[list[int]], pos: list[int], up: list[list[int]], down: list[list[int]],
           width: list[int], real: int) -> list[float]:
    """x centres: start packed, then, sweeping down and up, move each vertex toward the mean of
    its neighbours in the layer just placed; ops pull and hold harder than edge dummies, so the
    branch runs straight and the shortcut bends around it."""
    x = [0.0] * len(pos)
    for row in rows:
        acc = 0.0
        for v in row:
            x[v] = acc + width[v] / 2
            acc += width[v] + GAP_X
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        seq = rows[1:] if downward else rows[-2::-1]
        for row in seq:
            want = []
            for v in row:  # an edge dummy pulls a hundredth of what an op pulls
                nb = [(x[u], 1.0 if u < real else 0.01) for u in (up[v] if downward else down[v])]
                total = sum(w for _, w in nb)
                want.append(sum(p * w for p, w in nb) / total if nb else x[v])
            _pack(row, want, [1.0 if v < real else 0.01 for v in row], width, x)
    for row in rows[1:]:  # last, downward, ops only: a chain runs straight below its fork
        want = []
        for v in row:
            ops = [x[u] for u in up[v] if u < real] or [x[u] for u in up[v]] or [x[v]]
            want.append(sum(ops) / len(ops))
        _pack(row, want, [1.0 if v < real else 0.01 for v in row], width, x)
    return x


def _pack(row: list[int], want: list[float], weight: list[float], width: list[int],
          x: list[float]) -> None:
    """Put the row's vertices as near `want` as their order and widths allow: push right where
    two overlap, then shift the row by the weighted mean of what pushing cost (ops weigh more
    than edge dummies, so an op keeps its place and a dummy moves aside)."""
    placed: list[float] = []
    for i, v in enumerate(row):
        lo = placed[-1] + (width[row[i - 1]] + width[v]) / 2 + GAP_X if placed else float("-inf")
        placed.append(max(want[i], lo))
    total = sum(weight)
    shift = sum((w - p) * c for w, p, c in zip(want, placed, weight, strict=True)) / total if row else 0.0
    for v, p in zip(row, placed, strict=True):
        x[v] = p + shift
