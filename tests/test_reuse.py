"""Reuse across specs: extends: (paths and preset names), stage and op patches, _replace_, use:
libraries, --set and overrides=, --emit spec with origins, presets by name, and their errors.
The networks built this way are checked against timm's and against the same spec written flat."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import timm
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT, realistic_bn, rel_err, run_cli

import resnet_compiler as rc
from resnet_compiler.errors import SpecError

R50D = ROOT / "spec" / "resnet50d.yaml"
TINY = {
    "name": "tiny",
    "input": {"channels": 3, "height": 32, "width": 32},
    "num_classes": 10,
    "stem": [{"op": "conv", "name": "conv1", "channels": 16, "kernel": 3},
             {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "relu"}],
    "stages": [{"block": "basic", "depth": 1, "channels": 16},
               {"block": "basic", "depth": 1, "channels": 32, "stride": 2},
               {"block": "basic", "depth": 1, "channels": 64, "stride": 2}],
    "head": {"pool": "avg"},
}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fingerprint(net: rc.CompiledNetwork) -> tuple:
    """Everything that makes the network: nodes with attributes, edges, totals."""
    nodes = tuple((n, repr(sorted(d.items()))) for n, d in net.ir.nodes(data=True))
    return nodes, tuple(sorted(net.graph.edges())), net.total_params, net.total_macs


def equals_timm(net: rc.CompiledNetwork, name: str, **kwargs: object) -> None:
    torch.manual_seed(0)
    peer = realistic_bn(timm.create_model(name, pretrained=False, **kwargs)).eval()
    assert net.total_params == sum(p.numel() for p in peer.parameters())
    model = net.build_torch().eval()
    model.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel_err(peer(x), model(x)) <= 1e-5


def test_three_lines_on_a_preset_name_are_timms_resnet101d(tmp_path: Path) -> None:
    spec = write(tmp_path / "resnet101d.yaml",
                 "extends: resnet50d\nname: resnet101d\nstages: {layer3: {depth: 23}}\n")
    net = rc.compile(spec)
    assert net.name == "resnet101d"
    equals_timm(net, "resnet101d")
    recorded = json.loads(net.graph.graph["spec_text"])  # the ONNX metadata's spec: merged
    assert "extends" not in recorded and recorded["stages"][2]["depth"] == 23


def test_set_and_overrides_give_the_same_network_as_a_patch(tmp_path: Path) -> None:
    patched = rc.compile(write(tmp_path / "p.yaml", "extends: resnet50d\nstages: {2: {depth: 23}, "
                                                    "layer4: {depth: 2}}\n"))
    by_api = rc.compile(R50D, overrides={"stages.2.depth": 23, "stages.layer4.depth": 2})
    by_strings = rc.compile("resnet50d", overrides=["stages.layer3.depth=23", "stages.3.depth=2"])
    assert fingerprint(patched) == fingerprint(by_api) == fingerprint(by_strings)
    assert rc.compile(R50D).total_params == 25_576_264  # the preset itself is untouched


def test_a_relative_chain_merges_in_order_and_records_origins(tmp_path: Path) -> None:
    write(tmp_path / "l1.yaml", f"extends: {R50D}\nname: l1\nstages: {{layer3: {{depth: 23}}}}\n")
    write(tmp_path / "mid" / "l2.yaml", "extends: ../l1.yaml\nname: l2\ndefaults: {act: silu}\n")
    top = write(tmp_path / "mid" / "top" / "l3.yaml", "extends: ../l2.yaml\nname: r101d_silu\n"
                                                      "num_classes: 10\n")
    net = rc.compile(top)
    equals_timm(net, "resnet101d", act_layer="silu", num_classes=10)
    text = net.to_spec_yaml(origins=True)
    lines = text.splitlines()
    assert any(re.search(r"\bdepth: 23\s+# .*l1\.yaml:3$", ln) for ln in lines)
    assert any(re.search(r"\bact: silu\s+# .*l2\.yaml:3$", ln) for ln in lines)
    assert any(re.search(r"^name: r101d_silu\s+# .*l3\.yaml:2$", ln) for ln in lines)
    assert yaml.safe_load(text) == yaml.safe_load(net.to_spec_yaml())
    flat = write(tmp_path / "flat.yaml", net.to_spec_yaml())
    assert fingerprint(rc.compile(flat)) == fingerprint(net)


def test_mappings_merge_lists_replace_and_replace_drops_the_base(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", yaml.safe_dump({**TINY, "defaults": {"shortcut": "conv"}}))
    merged = rc.compile(write(tmp_path / "m.yaml", "extends: base.yaml\ndefaults: {act: silu}\n"))
    assert merged.spec.defaults.shortcut == "conv" and merged.spec.defaults.act == "silu"
    replaced = rc.compile(write(tmp_path / "r.yaml", "extends: base.yaml\n"
                                                     "defaults: {_replace_: true, act: silu}\n"))
    assert replaced.spec.defaults.shortcut is None and replaced.spec.defaults.act == "silu"
    stem = rc.compile(write(tmp_path / "s.yaml", "extends: base.yaml\nstem:\n"
                                                 "  - {op: conv, name: conv1, channels: 8, kernel: 3}\n"))
    assert [op.name for op in stem.spec.stem] == ["conv1"]
    every = rc.compile(write(tmp_path / "all.yaml", "extends: base.yaml\nstages: {'*': {depth: 2}}\n"))
    assert [s.depth for s in every.spec.stages] == [2, 2, 2]
    by_op = rc.compile(write(tmp_path / "op.yaml", "extends: base.yaml\nstem: {conv1: {channels: 24}}\n"))
    assert by_op.ir.nodes["conv1"]["out_channels"] == 24 and base.exists()


def test_everything_downstream_is_derived_from_the_merged_spec(tmp_path: Path) -> None:
    """The mmdetection #5306 trap: a change in the base must reach every value built on it."""
    write(tmp_path / "base.yaml", yaml.safe_dump({**TINY, "outputs": ["layer2", "layer3"]}))
    child = rc.compile(write(tmp_path / "c.yaml", "extends: base.yaml\nstages: {layer3: {channels: 96}}\n"))
    flat = rc.compile({**TINY, "outputs": ["layer2", "layer3"], "stages": [
        *TINY["stages"][:2], {**TINY["stages"][2], "channels": 96}]})
    assert fingerprint(child) == fingerprint(flat)
    source = child.to_torch_source()  # feature_info (channels, strides) and all: one file
    assert source == flat.to_torch_source() and "96" in source.split("feature_info", 1)[1]


def test_use_adds_a_library_and_two_definitions_clash(tmp_path: Path) -> None:
    block = yaml.safe_dump({"blocks": {"mine": {"class_name": "Mine", "branch": [
        {"op": "conv", "name": "conv1", "channels": "channels", "kernel": 3, "stride": "stride"},
        {"op": "bn", "name": "bn1"}]}}})
    write(tmp_path / "lib.yaml", block)
    write(tmp_path / "lib2.yaml", block)
    stages = [{**s, "block": "mine"} for s in TINY["stages"]]
    spec = {**TINY, "stages": stages, "use": ["lib.yaml", "resnest"]}
    net = rc.compile(write(tmp_path / "u.yaml", yaml.safe_dump(spec)))
    assert net.layout.classes == ("Mine",) or "Mine" in net.layout.classes
    with pytest.raises(SpecError, match=r"'mine' is defined by both .*lib\.yaml and .*lib2\.yaml"):
        rc.compile(write(tmp_path / "c.yaml", yaml.safe_dump({**spec, "use": ["lib.yaml", "lib2.yaml"]})))


BAD = [
    ("missing file", {"child.yaml": "extends: nowhere/base.yaml\nname: c\n"}, [],
     r"child\.yaml:1: extends: no such file nowhere/base\.yaml"),
    ("unknown preset", {"child.yaml": "extends: resnet50dd\n"}, [],
     r"child\.yaml:1: extends: .*'resnet50dd'.*did you mean 'resnet50d'\?"),
    ("cycle", {"child.yaml": "extends: b.yaml\n", "b.yaml": "extends: child.yaml\n"}, [],
     r"makes a cycle: .*child\.yaml -> .*b\.yaml -> .*child\.yaml"),
    ("no such stage", {"child.yaml": "extends: resnet50d\nstages: {layer9: {depth: 2}}\n"}, [],
     r"child\.yaml:2: stages\.layer9: no stage 'layer9' to patch .*did you mean 'layer4'\?"),
    ("set path", {"child.yaml": "extends: resnet50d\n"}, ["--set", "stages.9.depth=2"],
     r"^--set: stages\.9\.depth: no stage 9 .*an index 0 to 3"),
    ("set type", {"child.yaml": "extends: resnet50d\n"}, ["--set", "stages.0.depth=abc"],
     r"^--set: stages\[0\]\.depth: must be a whole number \(got 'abc'\)"),
    ("set unknown key", {"child.yaml": "extends: resnet50d\n"}, ["--set", "defaults.actt=silu"],
     r"^--set: defaults\.actt: .*did you mean 'act'"),
    ("set without =", {"child.yaml": "extends: resnet50d\n"}, ["--set", "stages.0.depth"],
     r"give PATH=VALUE"),
    ("unknown key in a child", {"child.yaml": "extends: resnet50d\nnum_clases: 10\n"}, [],
     r"child\.yaml:2: num_clases: .*did you mean 'num_classes'"),
    ("library without the block", {"child.yaml": "extends: resnet50d\nuse: [lib.yaml]\n"
                                   "stages: {layer1: {block: nope}}\n", "lib.yaml": "blocks: {}\n"},
     [], r"child\.yaml:3: stages\[0\]\.block: unknown block 'nope'; use: lib\.yaml does not"),
    ("library with a spec key", {"child.yaml": "extends: resnet50d\nuse: [lib.yaml]\n",
                                 "lib.yaml": "name: x\n"}, [], r"lib\.yaml:1: name: a library holds only"),
    ("unknown built-in library", {"child.yaml": "extends: resnet50d\nuse: [resnets]\n"}, [],
     r"no built-in library of that name.*did you mean 'resnet'"),
    ("bad replace flag", {"child.yaml": "extends: resnet50d\ndefaults: {_replace_: 1}\n"}, [],
     r"child\.yaml:2: defaults\._replace_: must be true or false"),
]


@pytest.mark.parametrize(("files", "args", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_reuse_is_one_line_exit_2(tmp_path: Path, files: dict[str, str], args: list[str],
                                      message: str) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    r = run_cli("child.yaml", *args, "--check", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(message, lines[0]), lines[0]


def test_set_works_on_train_bench_and_emit(tmp_path: Path) -> None:
    spec = write(tmp_path / "tiny.yaml", yaml.safe_dump(TINY))
    r = run_cli("bench", spec, "--set", "name=tiny_bench", "--set", "stages.0.depth=2", "--runs", "1",
                "--warmup", "0", "--batch", "1", "--rounds", "1", "--threads", "1")
    assert r.returncode == 0 and "bench tiny_bench" in r.stdout, r.stderr
    r = run_cli("train", spec, "--set", "name=tiny_set", "--dataset", "digits", "--epochs", "1",
                "--device", "cpu", "--out", tmp_path / "run", "--set", "input.height=16",
                "--set", "input.width=16")
    deeper = rc.compile(spec, overrides={"input.height": 16, "input.width": 16}).total_params
    assert r.returncode == 0 and f"training tiny_set ({deeper:,} params)" in r.stdout + r.stderr
    r = run_cli(spec, "--set", "num_classes=7", "--emit", "spec", "--origins")
    assert r.returncode == 0 and re.search(r"^num_classes: 7  # --set$", r.stdout, re.M)


def test_presets_by_name_and_list_models() -> None:
    names = rc.list_models()
    # a namespace folder's presets carry its name: torchvision/resnet50 beside timm's resnet50
    files = {("torchvision/" if p.parent.name == "torchvision" else "") + p.stem
             for p in (ROOT / "spec").rglob("*.yaml") if not p.name.startswith("_")}
    assert names == sorted(names) and set(names) == files
    assert rc.list_models("resnest*") == sorted(n for n in files if n.startswith("resnest"))
    assert {"resnest14d", "resnest50d", "resnest50d_4s2x40d", "resnest101e"} <= set(
        rc.list_models("resnest*"))
    assert rc.compile("resnest50d").total_params == 27_483_240


def test_a_file_beside_the_user_wins_over_a_preset(tmp_path: Path) -> None:
    write(tmp_path / "resnet50d", yaml.safe_dump({**TINY, "name": "local"}))
    r = run_cli("resnet50d", "--check", cwd=tmp_path)
    assert r.returncode == 0 and "local" in r.stdout
    r = run_cli("resnet50d", "--check", cwd=tmp_path / "..")
    assert r.returncode == 0 and "25,576,264" in r.stdout


def test_models_lists_every_preset_with_its_figures() -> None:
    r = run_cli("models", "--json")
    listed = {m["name"]: m for m in json.loads(r.stdout)}
    assert set(listed) == set(rc.list_models())
    from resnet_compiler.catalog import build_index
    fresh = build_index()  # the shipped index is what compiling the presets gives today
    assert fresh == json.loads((ROOT / "spec" / "index.json").read_text()), \
        "presets/index.json is stale: run python -m resnet_compiler.catalog"
    assert listed["resnet50d"]["peer"] == "timm:resnet50d"
    assert listed["resnet50d"]["params"] == 25_576_264
    r = run_cli("models", "sk*")
    rows = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert r.returncode == 0 and rows == [n for n in sorted(listed) if n.startswith("sk")]
    assert {"skresnet18", "skresnet34", "skresnext50_32x4d"} <= set(rows)


def test_the_readme_preset_table_is_the_index() -> None:
    from resnet_compiler.catalog import read_index, readme_with_table
    text = (ROOT / "README.md").read_text()
    assert readme_with_table(text, read_index()) == text, \
        "README's preset table is stale: run python -m resnet_compiler.catalog --readme README.md"


def test_every_preset_but_the_cifar_one_names_its_peer() -> None:
    from resnet_compiler.catalog import read_index
    without = sorted(n for n, e in read_index().items() if not e["peer"])
    assert without == ["resnet20_cifar"]


def _definitions(data: object, where: str, out: list) -> None:
    """(kind, name, canonical body, where) of each block, module, shortcut or stem of 3+ ops."""
    def ops(x: object) -> int:
        if isinstance(x, dict):
            return ("op" in x) + sum(ops(v) for v in x.values())
        return sum(ops(v) for v in x) if isinstance(x, list) else 0
    if not isinstance(data, dict):
        return
    for kind in ("blocks", "modules", "shortcuts"):
        for name, body in (data.get(kind) or {}).items():
            if ops(body) >= 3:
                out.append((kind, name, json.dumps(body, sort_keys=True), where))
    if isinstance(data.get("stem"), list) and ops(data["stem"]) >= 3:
        out.append(("stem", None, json.dumps(data["stem"], sort_keys=True), where))


def test_no_block_module_or_stem_is_written_twice_across_presets_and_the_library() -> None:
    files = sorted((ROOT / "spec").rglob("*.yaml")) + sorted(
        (ROOT / "resnet_compiler" / "language" / "builtin").glob("*.yaml"))
    defs: list = []
    for f in files:
        _definitions(yaml.safe_load(f.read_text()), str(f.relative_to(ROOT)), defs)
    by_body: dict[str, list[str]] = {}
    by_name: dict[tuple, set[str]] = {}
    for kind, name, body, where in defs:
        by_body.setdefault(body, []).append(where)
        if name:
            by_name.setdefault((kind, name), set()).add(where)
    assert [w for w in by_body.values() if len(w) > 1] == []
    assert [(k, w) for k, w in by_name.items() if len(w) > 1] == []


def test_the_presets_are_small() -> None:
    """Variants are a few lines on the preset they vary."""
    for name in ("resnet101", "resnet152", "resnet34", "resnext101_32x8d", "zoo/resnest14d",
                 "zoo/res2net50_14w_8s", "zoo/skresnet18"):
        body = [ln for ln in (ROOT / "spec" / f"{name}.yaml").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
        assert len(body) <= 6, (name, body)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["depth", "channels"]),
                          st.integers(1, 4)), max_size=4),
       st.sampled_from(["index", "name", "set"]))
def test_a_patch_is_the_flat_spec_with_the_same_edit(edits: list, how: str) -> None:
    """Whatever stage values are patched, and however (by index, by name, by --set), the network
    is the one the edited flat spec gives."""
    flat = json.loads(json.dumps(TINY))
    for i, key, value in edits:
        flat["stages"][i][key] = value * (16 if key == "channels" else 1)
    want = fingerprint(rc.compile(flat))
    if how == "set":
        overrides = {f"stages.{i}.{key}": value * (16 if key == "channels" else 1)
                     for i, key, value in edits}
        got = rc.compile(TINY, overrides=overrides)
    else:
        patch: dict = {}
        for i, key, value in edits:
            k = i if how == "index" else f"layer{i + 1}"
            patch.setdefault(k, {})[key] = value * (16 if key == "channels" else 1)
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            write(Path(d) / "base.yaml", yaml.safe_dump(TINY))
            got = rc.compile(write(Path(d) / "c.yaml", yaml.safe_dump({"extends": "base.yaml",
                                                                       "stages": patch})))
    assert fingerprint(got) == want


def test_the_wheel_carries_every_preset_and_library(tmp_path: Path) -> None:
    """`pip install .` must give the presets by name: every YAML file under spec/ (bases too),
    the index and the built-in libraries are package data."""
    import subprocess
    import sys
    import zipfile
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-500:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist())
    want = {f"resnet_compiler/presets/{p.relative_to(ROOT / 'spec').as_posix()}"
            for p in (ROOT / "spec").rglob("*") if p.suffix in (".yaml", ".json")}
    want |= {f"resnet_compiler/language/builtin/{p.name}"
             for p in (ROOT / "resnet_compiler" / "language" / "builtin").glob("*.yaml")}
    assert want - names == set()


def test_the_readme_examples_are_timms_networks() -> None:
    equals_timm(rc.compile(ROOT / "examples" / "reuse" / "resnet101d.yaml"), "resnet101d")
    equals_timm(rc.compile(ROOT / "examples" / "reuse" / "resnet101d_silu_c10.yaml"), "resnet101d",
                act_layer="silu", num_classes=10)


def test_a_library_file_compiled_alone_says_it_is_a_library() -> None:
    r = run_cli(ROOT / "spec" / "timm" / "_pruned_bottleneck.yaml", "--check")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "is a library" in r.stderr and "use:" in r.stderr
