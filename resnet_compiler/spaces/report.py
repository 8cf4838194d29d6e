"""`resnet-compile analyze`: one self-contained HTML page comparing swept design spaces, with
`edf.png` and `edf.csv` (sweep, error, edf) beside it.

The page holds every plot as an embedded PNG (data: URIs), its styles inline, and no script or
link to anything off the page, so it opens the same from a mail attachment or an archive.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..outputs import write_atomic
from .analysis import (
    Curve,
    DesignResult,
    Sweep,
    default_bins,
    edf,
    flops_edges,
    ks_pvalue,
    ks_statistic,
    load_sweep,
    normalised_edf,
    sweep_names,
)
from .files import csv_text
from .space import as_number

EDF_PNG, EDF_CSV = "edf.png", "edf.csv"
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:12px}.note{color:#555}
"""


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


# -- figures ---------------------------------------------------------------------------------

def edf_figure(sweeps: Sequence[Sweep], plain: Sequence[Curve], norm: Sequence[Curve]) -> bytes:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, curves, title in ((axes[0], plain, "error EDF"),
                              (axes[1], norm, "error EDF, normalised over flops bins")):
        for sweep, curve in zip(sweeps, curves, strict=True):
            if curve:
                xs = [curve[0][0]] + [e for e, _ in curve]
                ys = [0.0] + [f for _, f in curve]
                ax.step(xs, ys, where="post", label=f"{sweep.name} (n={len(sweep.finished)})")
        ax.set_xlabel("top-1 error (%)")
        ax.set_ylabel("cumulative prob.")
        ax.set_ylim(0, 1.02)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def _log_axis(values: Sequence[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 8


def scatter_figure(sweeps: Sequence[Sweep], columns: Sequence[str]) -> bytes:
    """Error against each sampled value and against flops, one panel each."""
    plt = _pyplot()
    panels = [*columns, "flops"]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for k, column in enumerate(panels):
        ax = axes[k // cols][k % cols]
        seen: list[float] = []
        scale = 1e-6 if column == "flops" else 1.0
        for sweep in sweeps:
            pts = [(as_number(d.row.get(column, "")), d.error) for d in sweep.finished]
            pts = [(float(x) * scale, e) for x, e in pts if x is not None]
            if pts:
                ax.scatter([x for x, _ in pts], [e for _, e in pts], s=12, alpha=0.7,
                           label=sweep.name)
                seen += [x for x, _ in pts]
        if _log_axis(seen):
            _plain_log_axis(ax.xaxis, ax.set_xscale)
        ax.set_xlabel("MFLOPs (pycls)" if column == "flops" else column, fontsize=9)
        ax.set_ylabel("error (%)", fontsize=9)
        ax.grid(alpha=0.3)
    for k in range(len(panels), rows * cols):
        axes[k // cols][k % cols].axis("off")
    if len(sweeps) > 1:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _plain_log_axis(axis: Any, set_scale: Any, base: int = 10) -> None:
    """A log scale labelled with plain numbers (8, 16, 32), not 10^x or 2^x."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    set_scale("log", base=base)
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _ints(cell: str) -> list[int]:
    return [int(float(x)) for x in str(cell).split()] if cell else []


def staircase_figure(best: Sequence[tuple[str, DesignResult]]) -> bytes:
    """Per-block widths of the best designs (the RegNet papers' width staircases)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    widths_seen: list[int] = []
    for label, d in best:
        widths, depths = _ints(d.row.get("widths", "")), _ints(d.row.get("depths", ""))
        per_block = [w for w, n in zip(widths, depths, strict=False) for _ in range(n)]
        if per_block:
            ax.step(range(len(per_block) + 1), per_block + per_block[-1:], where="post",
                    label=f"{label} ({d.error:.2f}%)")
            widths_seen += per_block
    if _log_axis(widths_seen):
        _plain_log_axis(ax.yaxis, ax.set_yscale, base=2)
    ax.set_xlabel("block index")
    ax.set_ylabel("width (channels)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


# -- the page --------------------------------------------------------------------------------

def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{html.escape(str(v))}</{tag}>"
    out = ["<table><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>")
    return "".join(out) + "</table>"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mflops(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return (s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2


def write_report(folders: Sequence[Path], out: Path, best: int = 5) -> list[Path]:
    """report.html at `out`, edf.png and edf.csv beside it; returns the paths written."""
    names = sweep_names(folders)
    sweeps = [load_sweep(f, n) for f, n in zip(folders, names, strict=True)]
    plain = [edf(s.errors) for s in sweeps]
    edges = flops_edges([d.flops for s in sweeps for d in s.finished if d.flops], default_bins(sweeps))
    norm = [normalised_edf(s, edges) for s in sweeps]
    edf_png = edf_figure(sweeps, plain, norm)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>design space report</title>"
             f"<style>{STYLE}</style></head><body><h1>Design space report: "
             f"{html.escape(', '.join(names))}</h1>"]
    parts.append(_summary(sweeps))
    parts.append("<h2>Error EDFs</h2><p class='note'>F(e): the fraction of a sweep's designs "
                 "whose top-1 error is at most e. Normalised: each design weighted so that every "
                 f"flops bin ({max(1, len(edges) - 1)} log-spaced bins over all sweeps) weighs "
                 "the same (Radosavovic et al. 2019).</p>" + _img(edf_png, "error EDFs"))
    if len(sweeps) > 1:
        parts.append(_ks_section(sweeps, plain, norm))
    columns = list(dict.fromkeys(c for s in sweeps for c in s.sampled))
    if any(s.finished for s in sweeps):
        parts.append("<h2>Error against the sampled values and flops</h2>"
                     + _img(scatter_figure(sweeps, columns), "error against sampled values"))
    for s in sweeps:
        parts.append(_best_section(s, best))
    parts.append("</body></html>\n")
    rows = [(s.name, e, f) for s, curve in zip(sweeps, plain, strict=True) for e, f in curve]
    png_path, csv_path = out.parent / EDF_PNG, out.parent / EDF_CSV
    write_atomic(png_path, edf_png)
    write_atomic(csv_path, csv_text(("sweep", "error", "edf"), rows))
    write_atomic(out, "".join(parts))
    return [out, png_path, csv_path]


def _summary(sweeps: Sequence[Sweep]) -> str:
    rows = []
    for s in sweeps:
        errs = s.errors
        flops = [d.flops for d in s.finished if d.flops]
        failed = sum(1 for d in s.designs if d.status == "failed")
        rows.append((s.name, len(s.designs), len(errs), failed, _fmt(min(errs) if errs else None),
                     _fmt(_median(errs)), f"{_mflops(min(flops) if flops else None)} - "
                     f"{_mflops(max(flops) if flops else None)}"))
    return "<h2>Sweeps</h2>" + _table(
        ("sweep", "designs", "trained", "failed", "best error %", "median error %", "MFLOPs"), rows)


def _ks_section(sweeps: Sequence[Sweep], plain: Sequence[Curve], norm: Sequence[Curve]) -> str:
    rows = []
    for i in range(len(sweeps)):
        for j in range(i + 1, len(sweeps)):
            d = ks_statistic(plain[i], plain[j])
            p = ks_pvalue(d, len(sweeps[i].errors), len(sweeps[j].errors))
            rows.append((sweeps[i].name, sweeps[j].name, f"{d:.4f}", f"{p:.3g}",
                         f"{ks_statistic(norm[i], norm[j]):.4f}"))
    return ("<h2>Kolmogorov-Smirnov statistic between sweeps</h2><p class='note'>KS D = the "
            "largest gap between two EDFs; p: the two-sample test's asymptotic p-value for the "
            "plain EDFs.</p>" + _table(("sweep A", "sweep B", "KS D", "p", "KS D (normalised)"),
                                       rows, left=2))


def _best_section(s: Sweep, k: int) -> str:
    ranked = sorted(s.finished, key=lambda d: d.error)[:k]  # type: ignore[arg-type,return-value]
    if not ranked:
        return f"<h2>Best designs of {html.escape(s.name)}</h2><p>no design finished training</p>"
    rows = [(d.design, _fmt(d.error), _mflops(d.flops), d.row.get("params", "-"),
             d.row.get("widths", ""), d.row.get("depths", ""),
             ", ".join(f"{c}={d.row.get(c)}" for c in s.sampled)) for d in ranked]
    out = [f"<h2>Best designs of {html.escape(s.name)}</h2>",
           _table(("design", "error %", "MFLOPs", "params", "widths", "depths", "sampled"), rows),
           _img(staircase_figure([(Path(d.design).stem, d) for d in ranked]), "width staircases")]
    for d in ranked:
        try:
            text = (s.folder / d.design).read_text()
        except OSError:
            continue
        out.append(f"<details><summary>{html.escape(d.design)}</summary><pre>"
                   f"{html.escape(text)}</pre></details>")
    return "".join(out)
