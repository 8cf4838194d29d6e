"""The `--check` table: one row per op with its output shape, window (kernel, stride, dilation,
groups), parameters and MACs, a subtotal after each stage, then totals."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

    from ..ir.graph import IRGraph
from ..ir.templates import Layout
from ..messages import format_shape

HEADERS = ("name", "op", "output", "k", "s", "d", "g", "params", "MACs")
LEFT = 3  # name, op and output are left-aligned; the numbers right-aligned


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(int(n))


def _count(n: int) -> str:
    return f"{n:,}" if n else "-"


def _row(node: str, d: dict) -> tuple[str, ...]:
    window = [str(d[k]) if k in d else "" for k in ("kernel", "stride", "dilation", "groups")]
    return (node, d["op"], format_shape(d["shape"]), *window, _count(d["params"]),
            _count(d["macs"]))


def _rows(graph: IRGraph | nx.DiGraph, layout: Layout) -> list[tuple[str, ...] | None]:
    """Table rows in graph order (branch, projection, add, as in the code), with a subtotal row
    after each stage; None marks a rule."""
    stage_of = {block.id: stage.name for stage in layout.stages for block in stage.blocks}
    last_node = {}
    for node in graph.nodes:
        prefix = ".".join(node.split(".")[:2])
        if prefix in stage_of:
            last_node[stage_of[prefix]] = node
    totals: dict[str, list[int]] = {}
    rows: list[tuple[str, ...] | None] = []
    for node, d in graph.nodes(data=True):
        rows.append(_row(node, d))
        stage = stage_of.get(".".join(node.split(".")[:2]))
        if stage is None:
            continue
        t = totals.setdefault(stage, [0, 0])
        t[0] += d["params"]
        t[1] += d["macs"]
        if last_node[stage] == node:
            rows += [None, (f"{stage} subtotal", "", "", "", "", "", "", f"{t[0]:,}", f"{t[1]:,}"),
                     None]
    return rows


def summary(graph: IRGraph | nx.DiGraph, layout: Layout) -> str:
    rows = _rows(graph, layout)
    cells = [r for r in rows if r is not None]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(HEADERS)]

    def line(row: tuple[str, ...]) -> str:
        left = [c.ljust(w) for c, w in zip(row[:LEFT], widths[:LEFT], strict=True)]
        right = [c.rjust(w) for c, w in zip(row[LEFT:], widths[LEFT:], strict=True)]
        return "  ".join(left + right).rstrip()

    gg = graph.graph
    rule = "-" * len(line(HEADERS))
    params, macs = gg["total_params"], gg["total_macs"]
    c, h, w = gg["input_shape"]
    returned = {node: f"{line_no}: {name}" for line_no, (name, node)
                in enumerate((gg.get("outputs") or {}).items())}
    body = [rule if r is None else line(r) + (f"  <- output {returned[r[0]]}" if r[0] in returned
                                               else "") for r in rows]
    ends = f"{gg['num_classes']} classes" if gg["num_classes"] is not None else "no classifier head"
    listed = [f"returns: {', '.join(gg['outputs'])}{', logits' if gg['output'] else ''}"
              " (outputs marked <-)"] if returned else []
    out = [f"{gg['name']}: input {c}x{h}x{w}, {ends}"
           "  (k kernel, s stride, d dilation, g groups)", *listed, rule, line(HEADERS), rule,
           *body, rule,
           f"total params:        {params:,} ({_human(params)})",
           f"total MACs:          {macs:,} ({_human(macs)}MACs per image)",
           f"parameter memory:    {params * 4 / 2**20:,.1f} MiB (fp32)",
           f"activation memory:   {gg['total_acts'] * 4 / 2**20:,.1f} MiB per image (fp32, every"
           " tensor the ops write)"]
    return "\n".join(out) + "\n"
