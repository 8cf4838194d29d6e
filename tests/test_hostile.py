"""Hostile inputs: each must end in exit 2 with one clear line, quickly, with nothing executed,
nothing unpickled, nothing allocated for absurd sizes and no output written."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from support import one_line

import resnet_compiler as rc
from resnet_compiler.cli import main
from resnet_compiler.errors import SpecError
from resnet_compiler.language import load
from resnet_compiler.language.spec import RESERVED_NAMES

ROOT = Path(__file__).resolve().parents[1]
CLI = shutil.which("resnet-compile") or str(Path(sys.executable).with_name("resnet-compile"))
SMALL = {"name": "tiny", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 4,
         "stages": [{"block": "basic", "depth": 1, "channels": 8}]}
SMALL_YAML = yaml.safe_dump(SMALL, sort_keys=False)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    """Exit code and stderr of the in-process CLI; stdout must stay empty for failures."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    if code:
        assert captured.out == ""
        assert "Traceback" not in captured.err
    return code, captured.err.strip()


def refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str | bytes,
            pattern: str, suffix: str = ".yaml") -> str:
    """Write `text` as a spec, run `--emit torch -o`, expect exit 2 and one matching line."""
    spec = tmp_path / f"hostile{suffix}"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "model.py"
    code, err = run_cli(capsys, spec, "--emit", "torch", "-o", out)
    assert code == 2, err
    assert err.startswith(f"{spec}"), err
    assert re.search(pattern, err), err
    assert not out.exists()
    return err


# ---- the YAML/JSON loader ------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'] +
    [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]) + "\n"


def test_alias_bomb_is_refused_quickly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    start = time.perf_counter()
    refused(capsys, tmp_path, BILLION_LAUGHS, r"more than [\d,]+ values after expanding aliases")
    assert time.perf_counter() - start < 5


def test_alias_bomb_fails_in_the_loader_before_validation() -> None:
    with pytest.raises(SpecError, match="alias bomb"):
        load.load_text(BILLION_LAUGHS, "bomb.yaml")


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "stages: " + "[" * 5000 + "]" * 5000 + "\n"),
    (".yaml", "".join(f"{'  ' * i}k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n"),
    (".json", '{"stages": ' + "[" * 100_000 + "]" * 100_000 + "}"),
])
def test_deep_nesting_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 suffix: str, text: str) -> None:
    refused(capsys, tmp_path, text, r"nested deeper than \d+ levels", suffix)
    with pytest.raises(SpecError, match="nested deeper"):
        load.load_text(text, "deep", json_format=suffix == ".json")


def test_oversized_file_is_refused_without_parsing(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    text = SMALL_YAML + "#" * load.MAX_SPEC_BYTES + "\n"
    refused(capsys, tmp_path, text, rf"specs are limited to {load.MAX_SPEC_BYTES} bytes")


@pytest.mark.parametrize("data, pattern", [
    (b"name: caf\xe9\n", r":1: not UTF-8 text \(byte 0xe9 at offset 9\)"),
    (b"\xff\xfe" + "name: x\n".encode("utf-16-le"), r"not UTF-8 text"),
    (SMALL_YAML.encode() + b"\x00\n", r"NUL bytes"),
])
def test_bytes_that_are_not_utf8_text(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      data: bytes, pattern: str) -> None:
    refused(capsys, tmp_path, data, pattern)


def test_utf8_byte_order_mark_is_accepted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "bom.yaml"
    spec.write_bytes(b"\xef\xbb\xbf" + SMALL_YAML.encode())
    assert run_cli(capsys, spec, "--check")[0] == 0


@pytest.mark.parametrize("suffix, text, pattern", [
    (".yaml", SMALL_YAML + "name: again\n", r":\d+: name: duplicate key"),
    (".yaml", "name: x\ninput: {channels: 3, channels: 1}\n", r":2: input.channels: duplicate key"),
    (".json", '{"name": "a", "name": "b"}', r"name: duplicate key"),
])
def test_duplicate_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path, suffix: str,
                        text: str, pattern: str) -> None:
    refused(capsys, tmp_path, text, pattern, suffix)


MARKER = "PWNED_MARKER"


@pytest.mark.parametrize("tagged", [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:subprocess.call [['touch', '{marker}']]",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!binary aGVsbG8=",
    "!!set {{a: null}}",
    "!!omap [a: 1]",
    "!custom 3",
    "!!timestamp 2024-01-01",
])
def test_yaml_tags_are_refused_and_never_run(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              tagged: str) -> None:
    marker = tmp_path / MARKER
    text = SMALL_YAML.replace("name: tiny", f"name: {tagged.format(marker=marker)}")
    refused(capsys, tmp_path, text, r":1: name: YAML tag '.+' is not allowed in a spec")
    assert not marker.exists()


def test_yaml_merge_keys_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = SMALL_YAML + "base: &b {channels: 3}\nhead: {<<: *b}\n"
    refused(capsys, tmp_path, text, r"merge keys \(<<\) are not supported")


@pytest.mark.parametrize("value, pattern", [
    (".nan", r"must be a whole number \(got nan\)"),
    (".inf", r"must be a whole number \(got inf\)"),
    ("-.inf", r"must be a whole number \(got -inf\)"),
    ("true", r"must be a whole number \(got True\)"),
    ("yes", r"must be a whole number \(got True\)"),
    ("8.0", r"must be a whole number \(got 8.0\)"),
    ("1e3", r"must be a whole number"),
    ("'8'", r"must be a whole number"),
])
def test_non_integers_where_integers_belong(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            value: str, pattern: str) -> None:
    text = SMALL_YAML.replace("channels: 8", f"channels: {value}")
    refused(capsys, tmp_path, text, r":\d+: stages\[0\]\.channels: " + pattern)


@pytest.mark.parametrize("value, shown", [("NaN", "NaN"), ("Infinity", "Infinity"),
                                          ("-Infinity", "-Infinity"), ("1e999", "Infinity")])
def test_json_non_finite_numbers(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 value: str, shown: str) -> None:
    text = ('{"name": "tiny",\n "input": {"channels": 3, "height": 16, "width": 16},\n'
            f' "num_classes": {value},\n'
            ' "stages": [{"block": "basic", "depth": 1, "channels": 8}]}\n')
    refused(capsys, tmp_path, text, rf":3: num_classes: {shown} is not a valid number", ".json")


def test_booleans_where_block_params_are_numbers(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    text = SMALL_YAML.replace("block: basic", "block: bottleneck\n  expansion: true")
    refused(capsys, tmp_path, text, r"stages\[0\]\.expansion: must be a whole number like the "
                                    r"default 4, got True")


# ---- code injection through names and expressions -------------------------------------------

EVIL_NAMES = [
    "x'); import os; os.system('touch {marker}'); ('",
    'x"""\nimport os\nos.system("touch {marker}")\n"""',
    "a\nimport os",
    "__import__",
    "__class__",
    "__init__",
    "_private",
    "os.system",
    "x y",
    "ünïcode",
    "forward",
    "state_dict",
    "class",
    "a" * 65,
]
EVIL_EXPRESSIONS = [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w')",
    "(lambda: 3)()",
    "channels.__class__",
    "[c for c in (1,)][0]",
    "exec('x=1') or 3",
    "eval('3')",
    "getattr(channels, 'real')",
    "channels[0] if channels else 0",
    "'8'",
    "2 ** 64",
    "channels; import os",
]


def _with_user_block(**changes: Any) -> dict[str, Any]:
    spec = {**SMALL, "blocks": {"mine": {
        "params": {"k": 3}, "vars": {"hidden": "channels * 2"},
        "branch": [{"op": "conv", "name": "conv1", "channels": "hidden", "kernel": "k",
                    "stride": "stride"},
                   {"op": "bn"},
                   {"op": "conv", "channels": "channels", "kernel": 1}]}},
        "stages": [{"block": "mine", "depth": 1, "channels": 8}]}
    block = spec["blocks"]["mine"]
    for key, value in changes.items():
        if key == "block_name":
            spec["blocks"] = {value: block}
            spec["stages"][0]["block"] = value
        elif key in ("param", "var"):
            field = "params" if key == "param" else "vars"
            block[field] = {value: 1 if key == "param" else "2"}
        elif key == "op_name":
            block["branch"][1]["name"] = value
        elif key == "expression":
            block["branch"][0]["channels"] = value
        elif key == "when":
            block["branch"][1]["when"] = value
        else:
            block[key] = value
    return spec


SLOTS = {
    "spec name": lambda v: {**SMALL, "name": v},
    "stage name": lambda v: {**SMALL, "stages": [{**SMALL["stages"][0], "name": v}]},
    "head fc": lambda v: {**SMALL, "head": {"fc": v}},
    "stem op name": lambda v: {**SMALL, "stem": [{"op": "conv", "channels": 4, "kernel": 3,
                                                   "name": v}]},
    "block name": lambda v: _with_user_block(block_name=v),
    "class_name": lambda v: _with_user_block(class_name=v),
    "block param": lambda v: _with_user_block(param=v),
    "block var": lambda v: _with_user_block(var=v),
    "block op name": lambda v: _with_user_block(op_name=v),
    "shortcut name": lambda v: {**_with_user_block(shortcut=v),
                                "shortcuts": {v: [{"op": "conv", "channels": "out_channels",
                                                   "kernel": 1}]}},
}


@pytest.mark.parametrize("slot", sorted(SLOTS))
def test_names_that_would_inject_code_are_refused(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, slot: str) -> None:
    marker = tmp_path / MARKER
    for evil in EVIL_NAMES:
        if slot == "spec name" and evil in ("forward", "state_dict", "class", "os.system"):
            continue  # fine as a spec name: it reaches the code only as text and a CamelCase class
        if slot in ("stage name", "stem op name", "block op name") and evil == "os.system":
            # a module path (a container `os` holding `system`), as timm's `stages.0.blocks`:
            # inert, it names attributes of the model and nothing else
            holder = "nn.Sequential(OrderedDict("
            assert f"self.os = {holder}" in one_line(rc.compile(SLOTS[slot](evil)).to_torch_source())
            continue
        spec = SLOTS[slot](evil.format(marker=marker))
        folder = tmp_path / f"case{EVIL_NAMES.index(evil)}"
        folder.mkdir()
        refused(capsys, folder, yaml.safe_dump(spec), r": .+")
        with pytest.raises(SpecError):
            rc.compile(spec)
    assert not marker.exists()


@pytest.mark.parametrize("slot", ["expression", "when"])
def test_expressions_that_would_run_code_are_refused(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path, slot: str) -> None:
    marker = tmp_path / MARKER
    for i, evil in enumerate(EVIL_EXPRESSIONS):
        spec = _with_user_block(**{slot: evil.format(marker=marker)})
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        key = "channels" if slot == "expression" else "when"
        refused(capsys, folder, yaml.safe_dump(spec), rf"blocks\.mine\.branch\[\d\]\.{key}: |"
                                                     r"stages\[0\]: ")
    assert not marker.exists()


def test_every_module_attribute_is_a_reserved_name() -> None:
    """A module named like an nn.Module attribute would shadow it in the generated class."""
    public = {n for n in dir(torch.nn.Module) if not n.startswith("_")}
    assert public <= RESERVED_NAMES, sorted(public - RESERVED_NAMES)


def test_odd_but_valid_names_stay_inert(tmp_path: Path) -> None:
    """A name with dots and dashes is allowed; it reaches the code only as text, and the module
    it names builds and runs."""
    spec = {**SMALL, "name": "my.net-v2_final"}
    source = rc.compile(spec).to_torch_source()
    for line in source.splitlines():
        if "my.net-v2_final" in line:  # only as text: the header and the model's docstring
            assert line.lstrip().startswith('"""my.net-v2_final: '), line
    assert re.search(r"^class [A-Z][A-Za-z0-9_]*\(nn\.Module\):\n    \"\"\"my\.net-v2_final: ", source,
                     re.MULTILINE)
    module = rc.compile(spec).build_torch().eval()
    assert module(torch.zeros(1, 3, 16, 16)).shape == (1, 4)


# ---- absurd sizes ----------------------------------------------------------------------------

def test_billion_channels_are_refused_before_allocating(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    text = SMALL_YAML.replace("channels: 8", "channels: 1000000000")
    tracemalloc.start()
    start = time.perf_counter()
    try:
        err = refused(capsys, tmp_path, text, r"the network has [\d,]+ parameters \([\d,.]+ [KMGT]iB in "
                                              r"fp32\), above the limit of 4,000,000,000")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 10
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB while refusing: {err}"


def test_max_params_is_configurable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = ROOT / "spec" / "resnet18.yaml"
    code, err = run_cli(capsys, spec, "--check", "--max-params", "1000000")
    assert code == 2
    assert "above the limit of 1,000,000" in err and "--max-params" in err
    assert run_cli(capsys, spec, "--check", "--max-params", "20000000")[0] == 0
    with pytest.raises(SpecError, match="above the limit of 1,000"):
        rc.compile(spec, max_params=1000)
    assert rc.compile(spec, max_params=12_000_000).total_params == 11_689_512
    for bad in ("0", "-5", "lots", "1e9"):
        code, err = run_cli(capsys, spec, "--check", "--max-params", bad)
        assert code == 2 and "--max-params" in err, err


def test_absurd_depth_is_refused_quickly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = SMALL_YAML.replace("depth: 1", "depth: 1000000000")
    start = time.perf_counter()
    refused(capsys, tmp_path, text, r":\d+: stages\[0\]\.depth: the network would have "
                                    r"1,000,000,000 blocks by this stage; the limit is")
    assert time.perf_counter() - start < 5


def test_absurd_expression_values_are_refused(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    spec = _with_user_block(expression="channels * 1000000000000000 * 1000000000000000")
    refused(capsys, tmp_path, yaml.safe_dump(spec), r"stages\[0\]: .*value too large")


# ---- output paths ----------------------------------------------------------------------------

def test_output_path_that_is_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL_YAML)
    code, err = run_cli(capsys, spec, "--emit", "torch", "-o", tmp_path)
    assert code == 2 and "is a directory" in err, err


def test_output_path_in_a_missing_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL_YAML)
    target = tmp_path / "missing" / "model.py"
    code, err = run_cli(capsys, spec, "--emit", "torch", "-o", target)
    assert code == 2 and "does not exist" in err, err
    assert not target.parent.exists()


def test_output_path_under_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL_YAML)
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("keep me")
    code, err = run_cli(capsys, spec, "--emit", "onnx", "-o", blocker / "out.onnx")
    assert code == 2 and "is not a folder" in err, err
    assert blocker.read_text() == "keep me"


def _unwritable_folder(tmp_path: Path) -> Path | None:
    """A folder this process cannot create files in: a read-only one, or for root (who ignores
    permissions) a read-only kernel folder."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return folder
    for candidate in (Path("/proc/sys"), Path("/sys/kernel")):
        if candidate.is_dir() and not os.access(candidate, os.W_OK):
            return candidate
    return None


def test_output_path_that_is_not_writable(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL_YAML)
    folder = _unwritable_folder(tmp_path)
    if folder is None:
        # root can write anywhere on a writable mount: stand in a read-only mount for this folder
        folder = tmp_path / "readonly"
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder
                            else real_access(p, mode, **kw))
    try:
        code, err = run_cli(capsys, spec, "--emit", "torch", "-o", folder / "model.py")
        assert code == 2 and "permission denied" in err, err
        assert not (folder / "model.py").exists()
    finally:
        (tmp_path / "readonly").chmod(0o755)


# ---- checkpoints -----------------------------------------------------------------------------

class _Explosive:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _onnx_with(capsys: pytest.CaptureFixture[str], tmp_path: Path,
               checkpoint: Path) -> tuple[int, str, Path]:
    spec = tmp_path / "s.yaml"
    spec.write_text(SMALL_YAML)
    out = tmp_path / "out.onnx"
    code, err = run_cli(capsys, spec, "--emit", "onnx", "--weights", checkpoint, "-o", out)
    return code, err, out


def _good_state() -> dict[str, torch.Tensor]:
    return rc.compile(SMALL).build_torch().state_dict()


def test_checkpoint_with_a_malicious_pickle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    for i, payload in enumerate([_Explosive(marker), {"conv1.weight": _Explosive(marker)}]):
        ckpt = tmp_path / f"evil{i}.pt"
        torch.save(payload, ckpt)
        raw = tmp_path / f"evil{i}.pkl"
        raw.write_bytes(pickle.dumps(payload, protocol=2))
        for path in (ckpt, raw):
            code, err, out = _onnx_with(capsys, tmp_path, path)
            assert code == 2, err
            assert err.startswith(f"error: {path}: "), err
            assert not out.exists()
    assert not marker.exists()


@pytest.mark.parametrize("payload, pattern", [
    ([1, 2, 3], r"not a state_dict \(found list\)"),
    (torch.zeros(3), r"not a state_dict \(found Tensor\)"),
    ({}, r"the state_dict is empty"),
    ({"conv1.weight": "not a tensor"}, r"not a state_dict"),
])
def test_checkpoint_that_is_not_a_state_dict(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             payload: Any, pattern: str) -> None:
    ckpt = tmp_path / "bad.pt"
    torch.save(payload, ckpt)
    code, err, out = _onnx_with(capsys, tmp_path, ckpt)
    assert code == 2 and re.search(pattern, err), err
    assert not out.exists()


def test_checkpoint_that_is_not_a_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for name, data in (("junk.pt", b"\x00garbage" * 10), ("junk.safetensors", b"garbage"),
                       ("text.pt", b"hello")):
        ckpt = tmp_path / name
        ckpt.write_bytes(data)
        code, err, out = _onnx_with(capsys, tmp_path, ckpt)
        assert code == 2 and err.startswith(f"error: {ckpt}: "), err
        assert not out.exists()
    code, err, _ = _onnx_with(capsys, tmp_path, tmp_path / "absent.pt")
    assert code == 2 and "no such checkpoint file" in err, err


def test_checkpoint_with_wrong_keys_and_shapes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = _good_state()
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["layer1.0.conv1.weight"] = torch.zeros(8, 8, 5, 5)
    ckpt = tmp_path / "wrong.pt"
    torch.save(state, ckpt)
    code, err, out = _onnx_with(capsys, tmp_path, ckpt)
    assert code == 2, err
    assert "missing" in err and "fc.bias" in err, err
    assert "unexpected" in err and "extra.weight" in err, err
    assert "layer1.0.conv1.weight" in err and "8x8x5x5" in err and "8x3x3x3" in err, err
    assert not out.exists()


def test_good_checkpoint_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The control case: the right state_dict exits 0 and writes the file."""
    ckpt = tmp_path / "good.pt"
    torch.save(_good_state(), ckpt)
    code, err, out = _onnx_with(capsys, tmp_path, ckpt)
    assert code == 0, err
    assert out.stat().st_size > 0


def test_hostile_spec_through_a_real_process(tmp_path: Path) -> None:
    """The installed entry point prints one line and exits 2 for a tagged YAML payload."""
    marker = tmp_path / MARKER
    spec = tmp_path / "evil.yaml"
    spec.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    r = subprocess.run([CLI, str(spec), "--emit", "torch", "-o", str(tmp_path / "m.py")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not marker.exists() and not (tmp_path / "m.py").exists()
