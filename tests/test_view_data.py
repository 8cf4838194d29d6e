"""What the HTML page and the DOT drawing are made of, without a browser: the layered layout of
a block (no overlaps, edges running down from source to target), runs of identical blocks, the
page's data against the compiled graph, its self-containment, and the commands' errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import valid_specs
from support import run_cli

import resnet_compiler as rc
from resnet_compiler.emit.folding import runs
from resnet_compiler.emit.html import node_marks
from resnet_compiler.emit.html_layout import (
    GAP_X,
    INPUT_H,
    INPUT_W,
    NODE_H,
    NODE_W,
    layout_of,
)

OFF_PAGE = re.compile(r"""(?:src|href|url\(|import)\s*=?\s*["'(]?\s*(?:https?:)?//""", re.I)


@st.composite
def dags(draw):
    """A block's wiring: inputs, ops in topological order, each reading 1-3 earlier values."""
    n_in = draw(st.integers(1, 2))
    n = draw(st.integers(1, 14))
    edges = []
    for t in range(n):
        sources = list(range(-n_in, t))
        picked = draw(st.lists(st.sampled_from(sources), min_size=1, max_size=3, unique=True))
        edges += [(s, t) for s in picked]
    return n_in, n, edges


@given(dags())
def test_layout_keeps_boxes_apart_and_runs_edges_downward(dag) -> None:
    n_in, n, edges = dag
    d = layout_of(n_in, n, edges)
    boxes = [(x, y, INPUT_W, INPUT_H) for x, y in d.inputs] + [(x, y, NODE_W, NODE_H)
                                                                for x, y in d.nodes]
    for x, y, w, h in boxes:
        assert 0 <= x and x + w <= d.width and 0 <= y and y + h <= d.height
    for i, (x, y, w, h) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            assert x + w + GAP_X - 1 <= x2 or x2 + w2 + GAP_X - 1 <= x or \
                y + h <= y2 or y2 + h2 <= y
    assert [(s, t) for s, t, _ in d.edges] == edges
    for s, t, pts in d.edges:
        sx, sy = d.inputs[-s - 1] if s < 0 else d.nodes[s]
        tx, ty = d.nodes[t]
        sw, sh = (INPUT_W, INPUT_H) if s < 0 else (NODE_W, NODE_H)
        assert abs(pts[0][0] - (sx + sw / 2)) <= 1 and pts[0][1] == sy + sh
        assert abs(pts[-1][0] - (tx + NODE_W / 2)) <= 1 and pts[-1][1] == ty
        assert all(a[1] <= b[1] for a, b in zip(pts, pts[1:], strict=False))
    assert layout_of(n_in, n, edges) == d


@given(st.lists(st.integers(0, 2), max_size=30))
def test_runs_are_the_maximal_stretches_of_equal_keys(keys) -> None:
    found = runs(keys)
    assert [i for r in found for i in range(r.start, r.start + r.count)] == list(range(len(keys)))
    for r in found:
        assert len(set(keys[r.start:r.start + r.count])) == 1
    for a, b in zip(found, found[1:], strict=False):
        assert keys[a.start] != keys[b.start]


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S)
    assert m, "no page data"
    return json.loads(m.group(1))


def test_page_data_is_the_compiled_graph_folded() -> None:
    net = rc.compile("spec/resnet152.yaml")
    page = net.to_html()
    assert not OFF_PAGE.search(page)
    assert page.count("<script") == 2 and "<link rel=\"icon\" href=\"data:,\">" in page
    view = _data(page)["views"][0]
    assert [n[0] for n in view["nodes"]] == list(net.ir.nodes)
    assert [(n[2], n[3], n[4]) for n in view["nodes"]] == [
        ("x".join(map(str, d["shape"])), d["params"], d["macs"]) for _, d in net.ir.nodes(data=True)]
    stages = [s for s in view["sections"] if s["kind"] == "stage"]
    assert [s["name"] for s in stages] == ["layer1", "layer2", "layer3", "layer4"]
    assert [s["runs"] for s in stages] == [[[0, 1], [1, 2]], [[0, 1], [1, 7]], [[0, 1], [1, 35]],
                                           [[0, 1], [1, 2]]]
    assert [s["title"] for s in view["sections"] if s["kind"] == "ops"] == ["stem", "head"]
    # 50 blocks, two wirings: with a projection shortcut and with an identity one (+ stem, head)
    assert len(view["drawings"]) == 4
    assert "class Bottleneck(nn.Module):" in view["code"]["Bottleneck"]
    assert view["params"] == net.total_params and view["macs"] == net.total_macs


@settings(max_examples=examples(25, 200))
@given(valid_specs(max_side=64))
def test_every_node_is_drawn_once_and_every_edge_once(spec) -> None:
    """For any valid network: the page's sections and blocks cover the graph's nodes exactly,
    runs cover each stage's blocks, and each block's drawing has one edge per value it reads."""
    net = rc.compile(spec)
    view = _data(net.to_html())["views"][0]
    covered = []
    reads = 0
    for s in view["sections"]:
        groups = s["blocks"] if s["kind"] == "stage" else [s]
        if s["kind"] == "stage":
            assert [i for a, c in s["runs"] for i in range(a, a + c)] == list(range(len(groups)))
        for g in groups:
            covered += range(g["first"], g["first"] + g["n"])
            w, h, ins, nodes, edges, meta = view["drawings"][g["draw"]]
            assert len(nodes) == g["n"] and len(ins) == len(g["ins"]) and len(meta) == len(edges)
            reads += len(edges)
    assert covered == list(range(len(net.ir.nodes)))
    uses = sum(len(e.get("uses", [0])) for _, adj in net.ir.pred.items() for e in adj.values())
    assert reads == uses


def test_a_thousand_blocks_fold_to_a_few_boxes(tmp_path: Path) -> None:
    spec = {"name": "deep", "input": {"channels": 3, "height": 32, "width": 32},
            "num_classes": 10, "stem": [{"op": "conv", "name": "conv1", "channels": 16,
                                         "kernel": 3}],
            "stages": [{"block": "bottleneck", "depth": 250, "channels": c, "stride": s}
                       for c, s in ((16, 1), (32, 2), (64, 2), (128, 2))],
            "head": {"pool": "avg"}}
    view = _data(rc.compile(spec).to_html())["views"][0]
    stages = [s for s in view["sections"] if s["kind"] == "stage"]
    assert [s["runs"] for s in stages] == [[[0, 1], [1, 249]]] * 4
    assert len(view["drawings"]) == 4


def test_spec_text_on_the_page_cannot_end_its_script(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("extends: resnet18\nname: s\nstages: {layer1: {depth: 1}}  "
                    "# </script><img src=//example.com/x.png>\n")
    page = rc.compile(str(spec)).to_html()
    assert "</script><img" not in page and not OFF_PAGE.search(page)
    refs = [r for s in _data(page)["views"][0]["sections"] if s["kind"] == "stage"
            for r in s["refs"]]
    assert any("</script><img src=//example.com/x.png>" in r for r in refs)


def test_diff_marks_compare_node_attributes() -> None:
    a, b = rc.compile("spec/resnet50.yaml"), rc.compile("spec/resnet50d.yaml")
    ma, mb = node_marks(a, b)
    assert ma["conv1"] == "removed" and mb["conv1.0"] == "added"
    # ResNet-D's shortcut: pool, conv, bn where ResNet-50 has conv, bn (layer1: no pool)
    assert ma["layer2.0.downsample.0"] == mb["layer2.0.downsample.0"] == "changed"
    assert mb["layer2.0.downsample.2"] == "added" and ma["layer1.0.downsample.0"] == "removed"
    assert ma["maxpool"] == "same"  # its input was renamed, the pool itself is the same
    assert sum(m != "same" for m in ma.values()) + sum(m == "added" for m in mb.values()) == 22
    same = rc.compile("spec/resnet50.yaml")
    assert set(node_marks(a, same)[0].values()) == {"same"}


def test_dot_folds_runs_the_same_way() -> None:
    net = rc.compile("spec/resnet152.yaml")
    dot = net.to_dot()
    assert dot.count("subgraph") == 8
    assert 'label="layer3.1 … layer3.35 (Bottleneck) x35";' in dot
    assert '"layer3.1.act3" -> "layer4.0.conv1";' in dot and "layer3.2." not in dot
    assert net.to_dot(fold=False).count("subgraph") == 50
    assert net.to_dot("layer3.7").count("subgraph") == 1  # one block: itself, never folded


def test_commands_refuse_bad_use_in_one_line(tmp_path: Path) -> None:
    r = run_cli("diff", "resnet18", "resnet34", "--html")
    assert r.returncode == 2 and r.stderr.strip() == \
        "error: resnet-compile diff: --html and -o FILE go together"
    r = run_cli("diff", "resnet18", "resnet34", "--html", "-o", tmp_path / "no" / "d.html")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    r = run_cli("resnet18", "--emit", "html", "--block", "layer1.0")
    assert r.returncode == 2 and "--block and --unfold go with --emit dot" in r.stderr
    page = tmp_path / "m.html"
    page.write_text("before")
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: resnet18\nname: bad\nstages: {layer1: {depth: -1}}\n")
    r = run_cli(bad, "--emit", "html", "-o", page)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert page.read_text() == "before" and sorted(tmp_path.iterdir()) == sorted([page, bad])
