"""`--emit html` and `diff --html` in a real browser: headless Chromium (Debian's packages)
driven by selenium opens the written pages from file:// and works them as a user does: unfold a
stage, a run of identical blocks and a block; search a module path; click an op. One browser
serves the whole module."""

from __future__ import annotations

from pathlib import Path

import browser
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from support import run_cli

import resnet_compiler as rc
from resnet_compiler.emit.folding import membership
from resnet_compiler.messages import format_shape


@pytest.fixture(scope="module")
def drv(tmp_path_factory: pytest.TempPathFactory):
    d = browser.open_driver(tmp_path_factory.mktemp("chrome"))
    yield d
    d.quit()


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pages")


def _page(out: Path, spec: str, name: str) -> Path:
    path = out / f"{name}.html"
    if not path.exists():
        r = run_cli(spec, "--emit", "html", "-o", path)
        assert r.returncode == 0, r.stderr
        assert r.stderr.strip() == f"wrote {path}"
    return path


def _offline(drv) -> None:
    errors, urls = browser.logs(drv)
    assert not errors
    assert not browser.off_page(urls), urls


def test_stages_fold_into_runs_and_blocks_into_ops(drv, out: Path) -> None:
    net = rc.compile("spec/resnet50.yaml")
    browser.load(drv, _page(out, "spec/resnet50.yaml", "resnet50"))
    stages = browser.shown(drv, "stage")
    assert [s["path"] for s in stages] == [s.name for s in net.layout.stages]
    assert all(s["folded"] == "true" for s in stages)
    assert not browser.shown(drv, "block")

    browser.toggle(drv, "stage", "layer3")
    blocks = browser.shown(drv, "block", "layer3.")
    # the strided block, then five identical ones shown once
    assert [(b["path"], b["count"]) for b in blocks] == [("layer3.0", 1), ("layer3.1", 5)]

    browser.toggle(drv, "block", "layer3.1")  # the run gives way to its five blocks
    blocks = browser.shown(drv, "block", "layer3.")
    assert [(b["path"], b["count"], b["folded"]) for b in blocks] == [
        (f"layer3.{i}", 1, "true") for i in range(6)]
    assert sum(b["count"] for b in browser.shown(drv, "block")) == len(net.layout.stages[2].blocks)

    browser.toggle(drv, "block", "layer3.0")
    ops = [o["path"] for o in browser.shown(drv, "op", "layer3.0.")]
    assert ops == membership(net.ir, net.layout).nodes["layer3.0"]
    residual = [o for o in browser.shown(drv, "op", "layer3.0.") if "residual" in o["cls"]]
    assert [o["path"] for o in residual] == ["layer3.0.add"]
    assert {o["path"] for o in browser.shown(drv, "op", "layer3.0.") if "shortcut" in o["cls"]} \
        == {"layer3.0.downsample.0", "layer3.0.downsample.1"}

    # every edge: its source's shape as --check prints it; the shortcut into the add dashed
    shown_edges = browser.edges(drv)
    for e in shown_edges:
        assert e["data-shape"] == format_shape(net.ir.nodes[e["data-from"]]["shape"]), e
    into_add = {(e["data-from"], e.get("data-edge-role")) for e in shown_edges
                if e["data-to"] == "layer3.0.add"}
    assert into_add == {("layer3.0.bn3", "branch"), ("layer3.0.downsample.1", "shortcut")}
    assert {"conv1", "maxpool", "layer2.3.act3"} <= {e["data-from"] for e in shown_edges}

    browser.toggle(drv, "stage", "layer3")  # folds again
    assert not browser.shown(drv, "block", "layer3.")
    _offline(drv)


def test_search_opens_the_way_and_details_show_spec_line_and_code(drv, out: Path) -> None:
    browser.load(drv, _page(out, "spec/resnet50.yaml", "resnet50"))
    box = drv.find_element(By.CSS_SELECTOR, "input[data-role=search]")
    box.send_keys("layer3.5.conv2", Keys.ENTER)
    op = browser.shown(drv, "op", "layer3.5.conv2")
    assert [o["selected"] for o in op] == ["true"]
    assert [b["path"] for b in browser.shown(drv, "block", "layer3.") if b["folded"] == "false"] \
        == ["layer3.5"]
    text = drv.find_element(By.CSS_SELECTOR, "[data-role=details]").text
    assert "layer3.5.conv2" in text and "256x14x14" in text and "589,824" in text
    # where the spec wrote it (resnet50.yaml says bottleneck; the stage comes from resnet18's)
    assert "resnet50.yaml:6: stages[2]: block" in text and "resnet18.yaml:15: stages[2]" in text
    mark = drv.find_element(By.CSS_SELECTOR, "[data-role=details] pre mark").text
    assert mark.strip().startswith("self.conv2 = nn.Conv2d(")
    assert "class Bottleneck(nn.Module):" in text

    browser.toggle(drv, "stage", "layer1")  # a click on an op replaces the selection
    browser.toggle(drv, "block", "layer1.0")
    drv.find_element(By.CSS_SELECTOR, "[data-kind=op][data-path='layer1.0.downsample.0']").click()
    assert [o["path"] for o in browser.shown(drv, "op") if o["selected"] == "true"] == \
        ["layer1.0.downsample.0"]
    assert "layer1.0.downsample.0.weight" in drv.find_element(
        By.CSS_SELECTOR, "[data-role=details]").text

    box.clear()
    box.send_keys("layer9.0.conv1", Keys.ENTER)
    assert drv.find_element(By.CSS_SELECTOR, ".status").text == "no module path layer9.0.conv1"
    box.clear()
    box.send_keys("layer3.5.conv9", Keys.ENTER)
    assert drv.find_element(By.CSS_SELECTOR, ".status").text == (
        "no module path layer3.5.conv9; did you mean layer3.5.conv1, layer3.5.conv2, layer3.5.conv3?")
    _offline(drv)


def test_multipath_block_draws_its_paths_side_by_side(drv, out: Path) -> None:
    # a link to a module path opens the way to it
    browser.load(drv, _page(out, "spec/zoo/skresnet18.yaml", "skresnet18"),
                 "layer2.0.conv1.paths.1.conv")
    assert [o["path"] for o in browser.shown(drv, "op") if o["selected"] == "true"] == \
        ["layer2.0.conv1.paths.1.conv"]
    assert [b["path"] for b in browser.shown(drv, "block") if b["folded"] == "false"] == \
        ["layer2.0"]
    ops = {o["path"]: o["box"] for o in browser.shown(drv, "op", "layer2.0.")}
    a, b = ops["layer2.0.conv1.paths.0.conv"], ops["layer2.0.conv1.paths.1.conv"]
    assert a[1] == b[1] and abs(a[0] - b[0]) >= a[2]  # same row, not overlapping
    boxes = list(ops.values())
    for i, p in enumerate(boxes):  # no two op boxes overlap
        for q in boxes[i + 1:]:
            assert p[0] + p[2] <= q[0] or q[0] + q[2] <= p[0] or \
                p[1] + p[3] <= q[1] or q[1] + q[3] <= p[1]
    parts = [e for e in browser.edges(drv) if e["data-from"] == "layer2.0.conv1.parts"]
    # each path takes half the channels of the 64x56x56 input; data-shape stays the split's
    assert sorted((e["data-part"], e["data-part-shape"], e["data-shape"]) for e in parts) == [
        ("0", "32x56x56", "64x56x56"), ("1", "32x56x56", "64x56x56")]
    _offline(drv)


def test_feature_outputs_are_marked_and_spec_text_stays_text(drv, out: Path) -> None:
    spec = out / "tapped.yaml"
    spec.write_text(
        "extends: resnet18\nname: tapped\noutputs: [layer2, layer4]\n"
        "stages: {layer3: {depth: 3}}  # </script><script>document.title = 'owned'</script>\n")
    browser.load(drv, _page(out, str(spec), "tapped"))
    assert drv.title == "tapped: resnet-compiler"
    marked = {s["path"]: s["feature"] for s in browser.shown(drv, "stage")}
    assert marked == {"layer1": None, "layer2": "layer2", "layer3": None, "layer4": "layer4"}
    browser.toggle(drv, "stage", "layer3")
    drv.find_element(By.CSS_SELECTOR, "[data-kind=stage][data-path=layer3] > .head .title").click()
    text = drv.find_element(By.CSS_SELECTOR, "[data-role=details]").text
    assert "tapped.yaml:4: stages[2]: depth" in text and "</script><script>document.title" in text
    assert [(b["path"], b["count"]) for b in browser.shown(drv, "block", "layer3.")] == [
        ("layer3.0", 1), ("layer3.1", 2)]
    _offline(drv)


def test_diff_page_marks_exactly_the_nodes_that_differ(drv, out: Path) -> None:
    page = out / "diff.html"
    r = run_cli("diff", "spec/resnet50.yaml", "spec/resnet50d.yaml", "--html", "-o", page)
    assert r.returncode == 1, r.stderr  # they differ
    assert "delta:" in r.stdout and r.stderr.strip() == f"wrote {page}"
    a, b = rc.compile("spec/resnet50.yaml").ir, rc.compile("spec/resnet50d.yaml").ir
    want = {n: "removed" if n not in b.nodes else "same" if a.nodes[n] == b.nodes[n]
            else "changed" for n in a.nodes}
    want.update({n: "added" for n in b.nodes if n not in a.nodes})
    browser.load(drv, page)
    for _ in range(6):  # unfold everything, as a user clicking every toggle
        n = browser.js(drv, """let n = 0;
          for (const g of document.querySelectorAll('[data-folded=true]')) {
            const t = [...g.querySelectorAll('[data-role=toggle]')].find(t => t.closest('[data-kind]') === g);
            t.click(); n++; }
          return n;""")
        if not n:
            break
    marks: dict[str, set[str]] = {}
    for o in browser.shown(drv, "op"):
        marks.setdefault(o["path"], set()).add(o["diff"])
    assert marks == {n: {m} for n, m in want.items()}
    assert {"conv1.0", "conv1.6", "act1"} <= {n for n, m in want.items() if m == "added"}
    stages = {s["path"]: s["diff"] for s in browser.shown(drv, "stage")}
    assert stages == {f"layer{i}": "changed" for i in range(1, 5)}  # each has a new shortcut
    rows = drv.find_elements(By.CSS_SELECTOR, "table.stages tr")
    assert [r.text.split()[0] for r in rows[1:]] == ["layer1", "layer2", "layer3", "layer4"]
    _offline(drv)
