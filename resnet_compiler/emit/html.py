"""`--emit html` and `diff --html`: one self-contained page (its CSS, script and data inline, no
request leaving it) that draws a network folded as stages -> blocks -> ops.

The data comes from `html_data` (everything decided in Python: paths, runs, shapes, costs, spec
lines, code, per-block coordinates); the page's own script (`html_assets/view.js`) builds the
boxes a user unfolds, when they are unfolded, so large networks open at once.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .html_data import json_ready, network_data

if TYPE_CHECKING:
    from ..compiler import CompiledNetwork
    from ..diff import NetworkDiff

ASSETS = Path(__file__).with_name("html_assets")


@lru_cache(maxsize=2)
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element early and reads as no URL to a scanner,
    whatever text from the spec it holds (`</script>`, `src=//host`): <, >, & and / escaped."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("/", "\\/"))


def _page(title: str, header: str, page: dict[str, Any], main_class: str = "",
          intro: str = "") -> str:
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
        f"<style>\n{_asset('view.css')}</style>\n</head>\n<body>\n"
        f"<header class=\"top\">\n{header}\n"
        "<div class=\"searchbox\"><input data-role=\"search\" type=\"search\" "
        "placeholder=\"find a module path: layer3.5.conv2\" aria-label=\"find a module path\" "
        "autocomplete=\"off\"><span class=\"status\"></span><div class=\"hint\" hidden></div></div>\n"
        "<button id=\"fold-all\" type=\"button\">fold all</button>\n</header>\n"
        f"{intro}<main class=\"{main_class}\"></main>\n"
        "<aside class=\"details\" data-role=\"details\"><h3>details</h3><p>Click an op, a block or a"
        " stage: its attributes, where the spec wrote it, and its PyTorch code.</p></aside>\n"
        f"<script type=\"application/json\" id=\"page-data\">{_json_for_script(page)}</script>\n"
        f"<script>\n{_asset('view.js')}</script>\n</body>\n</html>\n")


def _facts(items: list[tuple[str, str]]) -> str:
    return "<div class=\"facts\">" + "".join(
        f"<span>{html.escape(k)} <b>{html.escape(v)}</b></span>" for k, v in items) + "</div>"


def _network_facts(net: CompiledNetwork, data: dict[str, Any]) -> list[tuple[str, str]]:
    classes = data["classes"]
    outputs = data["outputs"]
    return [("input", data["input"]),
            ("output", f"{classes} classes ({data['output']})" if classes else
             "feature maps" + (f" ({', '.join(outputs)})" if outputs else "")),
            ("params", f"{net.total_params:,} ({net.total_params / 1e6:.2f} M)"),
            ("MACs", f"{net.total_macs:,} ({net.total_macs / 1e9:.3f} G per image)"),
            ("preprocessing", data["preprocessing"] or "-"),
            *([("feature outputs", ", ".join(f"{k} ({v})" for k, v in outputs.items()))]
              if outputs else []),
            ("spec", data["source"] or "-"),
            ("resnet-compiler", str(data["version"]))]


def model_page(net: CompiledNetwork) -> str:
    """The page of one network."""
    data = network_data(net)
    header = f"<h1>{html.escape(net.name)}</h1>\n{_facts(_network_facts(net, data))}"
    return _page(f"{net.name}: resnet-compiler", header, {"kind": "model", "views": [data]})


def node_marks(a: CompiledNetwork, b: CompiledNetwork) -> tuple[dict[str, str], dict[str, str]]:
    """same|changed|removed for A's nodes and same|changed|added for B's, by module path: a
    node is changed when its attributes differ (op, settings, shape, params); a change in what
    feeds it shows as the nodes added or removed around it."""
    ga, gb = a.ir, b.ir
    marks_a = {n: ("removed" if n not in gb.nodes else
                   "same" if ga.nodes[n] == gb.nodes[n] else "changed") for n in ga.nodes}
    marks_b = {n: ("added" if n not in ga.nodes else marks_a[n]) for n in gb.nodes}
    return marks_a, marks_b


def _changes(a: CompiledNetwork, b: CompiledNetwork, marks: dict[str, str]) -> dict[str, Any]:
    out = {}
    for n, m in marks.items():
        if m == "changed":
            da, db = a.ir.nodes[n], b.ir.nodes[n]
            out[n] = {k: [json_ready(da.get(k)), json_ready(db.get(k))] for k in {**da, **db}
                      if da.get(k) != db.get(k)}
    return out


def diff_page(result: NetworkDiff) -> str:
    """Two networks side by side, each node marked same, changed, added or removed, with the
    totals and per-stage deltas above them."""
    a, b = result.a, result.b
    marks_a, marks_b = node_marks(a, b)
    da, db = network_data(a, marks_a), network_data(b, marks_b)
    counts = {"changed": sum(m == "changed" for m in marks_a.values()),
              "added": sum(m == "added" for m in marks_b.values()),
              "removed": sum(m == "removed" for m in marks_a.values())}
    rows = "".join(
        f"<tr><td>{html.escape(s['name'])}</td><td>{s['a']['blocks']}</td><td>{s['b']['blocks']}</td>"
        f"<td>{s['a']['params']:,}</td><td>{s['b']['params']:,}</td>"
        f"<td class=\"{_delta_class(s['delta']['params'])}\">{s['delta']['params']:+,}</td>"
        f"<td>{s['a']['macs'] / 1e6:,.1f}</td><td>{s['b']['macs'] / 1e6:,.1f}</td>"
        f"<td class=\"{_delta_class(s['delta']['macs'])}\">{s['delta']['macs'] / 1e6:+,.1f}</td></tr>"
        for s in result.stages)
    dp, dm = b.total_params - a.total_params, b.total_macs - a.total_macs
    facts = [("A", f"{a.total_params:,} params, {a.total_macs / 1e9:.3f} GMACs"),
             ("B", f"{b.total_params:,} params, {b.total_macs / 1e9:.3f} GMACs"),
             ("delta", f"{dp:+,} params, {dm / 1e9:+.3f} GMACs"),
             ("nodes", f"{counts['changed']} changed, {counts['added']} added, "
                       f"{counts['removed']} removed"),
             ("state_dict", f"{result.loads['same_shape']} of A's {result.loads['a_keys']} keys"
                            " load into B")]
    header = f"<h1>{html.escape(a.name)} → {html.escape(b.name)}</h1>\n{_facts(facts)}"
    legend = "".join(f"<span><i style=\"background:var(--{k})\"></i> {k}</span>"
                     for k in ("changed", "added", "removed"))
    intro = (f"<section class=\"summary\"><div class=\"legend\">{legend}</div>\n"
             "<table class=\"stages\"><tr><th>stage</th><th>blocks A</th><th>blocks B</th>"
             "<th>params A</th><th>params B</th><th>delta</th><th>MMACs A</th><th>MMACs B</th>"
             f"<th>delta</th></tr>{rows}</table></section>\n")
    page = {"kind": "diff", "views": [da, db], "diff": {"changes": _changes(a, b, marks_a)}}
    return _page(f"{a.name} vs {b.name}: resnet-compiler", header, page, "diff", intro)


def _delta_class(n: int) -> str:
    return "delta-up" if n > 0 else "delta-down" if n < 0 else ""
