"""The `--check` table: one row per op with output shape, parameters and MACs, then totals."""

from __future__ import annotations

import networkx as nx


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(int(n))


def summary(graph: nx.DiGraph) -> str:
    rows = []
    for node in graph.nodes:  # insertion order: branch, projection, add, as in the code
        d = graph.nodes[node]
        shape = "x".join(map(str, d["shape"]))
        rows.append((node, d["op"], shape, f"{d['params']:,}" if d["params"] else "-",
                     f"{d['macs']:,}" if d["macs"] else "-"))
    headers = ("name", "op", "output", "params", "MACs")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: tuple[str, ...]) -> str:
        left = [c.ljust(w) for c, w in zip(cells[:3], widths[:3], strict=True)]
        right = [c.rjust(w) for c, w in zip(cells[3:], widths[3:], strict=True)]
        return "  ".join(left + right).rstrip()

    gg = graph.graph
    rule = "-" * len(line(headers))
    params, macs = gg["total_params"], gg["total_macs"]
    act_bytes = gg["activation_elements"] * 4
    c, h, w = gg["input_shape"]
    out = [f"{gg['name']}: input {c}x{h}x{w}, {gg['num_classes']} classes", rule, line(headers),
           rule, *map(line, rows), rule,
           f"total params:        {params:,} ({_human(params)})",
           f"total MACs:          {macs:,} ({_human(macs)}MACs per image)",
           f"parameter memory:    {params * 4 / 2**20:,.1f} MiB (fp32)",
           f"activation memory:   {act_bytes / 2**20:,.1f} MiB per image (fp32, all op outputs)"]
    return "\n".join(out) + "\n"
