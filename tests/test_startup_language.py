"""What keeps start-up flat as the language grows: op models built only for the kinds a spec
uses, the built-in library's parsed data kept as JSON, and head-list errors that read like the
stem's (the op union no longer shows through their paths)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import ROOT, run_main

from resnet_compiler.language.library import (
    BUILTIN_DIR,
    builtin_library_files,
    parsed_library,
)

SMALL = """\
name: small
input: {channels: 3, height: 32, width: 32}
num_classes: 10
stem:
  - {op: conv, name: conv1, channels: 8, kernel: 3}
  - {op: bn, name: bn1}
  - {op: relu, name: relu}
stages:
  - {block: basic, depth: 1, channels: 8}
"""


def _kinds(value: object) -> set[str]:
    """Every `op:` written anywhere in plain data."""
    if isinstance(value, dict):
        own = {value["op"]} if isinstance(value.get("op"), str) else set()
        return own.union(*(_kinds(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_kinds(v) for v in value))
    return set()


def test_a_check_builds_the_models_of_the_kinds_in_use_only(tmp_path: Path) -> None:
    """A fresh process that checks a spec has built the op models of the kinds the spec and the
    built-in library write, and no other: an op added to the table costs a spec nothing."""
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    code = (
        "import json, sys\n"
        "from resnet_compiler.cli import main\n"
        "from resnet_compiler.language.spec import OP_KINDS, _OP_MEMBERS\n"
        f"assert main([{str(spec)!r}, '--check']) == 0\n"
        "print(json.dumps(sorted(k for k in OP_KINDS if _OP_MEMBERS[k].__pydantic_complete__)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    built = set(json.loads(r.stdout.strip().splitlines()[-1]))
    written = _kinds(yaml.safe_load(SMALL)).union(
        *(_kinds(yaml.safe_load(p.read_text())) for p in builtin_library_files().values()))
    from resnet_compiler.language.spec import OP_KINDS
    assert {"conv", "bn", "relu"} <= built
    assert built <= written, built - written
    assert len(built) < len(OP_KINDS)


def test_the_command_does_not_import_the_plugin_scanner(tmp_path: Path) -> None:
    """With pydantic's plugins disabled (the command's default), `--check` never imports
    importlib.metadata, which pydantic's plugin loader would."""
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL)
    code = (
        "import sys\n"
        "from resnet_compiler.cli import entry_point\n"
        f"sys.argv = ['resnet-compile', {str(spec)!r}, '--check']\n"
        "try:\n    entry_point()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('importlib.metadata' in sys.modules)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"


HEAD_CASES = {
    "bad value": ("{op: conv, kernel: 0, channels: 4}",
                  "head[0].kernel: must be greater than 0 (got 0)"),
    "unknown key": ("{op: linear, features: 3}",
                    "head[0].features: unknown key 'features'; did you mean 'out_features'?"),
    "misspelt marker": ("pre_logit", "head[0]: must be 'pre_logits' (got 'pre_logit')"),
    "not an op": ("3", "head[0]: each op needs an 'op' key ("),
    "in a loop": ("{repeat: 2, ops: [{op: bn, x: 1}]}", "head[0].ops[0].x: unknown key 'x'"),
}


@pytest.mark.parametrize("item, message", HEAD_CASES.values(), ids=HEAD_CASES)
def test_a_head_list_item_is_reported_like_a_stem_op(tmp_path: Path, item: str,
                                                      message: str) -> None:
    """One line at the item's own line, its path as the stem's would be (no union members'
    names, no second line about `pre_logits` for an op that is wrong)."""
    spec = tmp_path / "head.yaml"
    spec.write_text(SMALL + f"head:\n  - {{op: global_pool}}\n  - {item}\n"
                    "  - {op: flatten}\n  - {op: linear, out_features: 10}\n")
    code, lines = run_main(spec, "--check")
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{spec}:12: "), lines
    assert lines[0].split(": ", 1)[1].replace("head[1]", "head[0]").startswith(message), lines


def _library_copy(tmp_path: Path) -> tuple[list[Path], Path]:
    folder = tmp_path / "builtin"
    shutil.copytree(BUILTIN_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return sorted(folder.glob("*.yaml")), folder / "__pycache__"


def _yaml_data(files: list[Path]) -> dict:
    data: dict = {"blocks": {}, "modules": {}, "shortcuts": {}}
    for path in files:
        for kind, items in yaml.safe_load(path.read_text()).items():
            data[kind].update(items)
    return data


def test_the_library_data_is_kept_as_json_named_by_the_files(tmp_path: Path) -> None:
    files, copies = _library_copy(tmp_path)
    first = parsed_library(files, copies)
    assert first == _yaml_data(files)
    (copy,) = copies.glob("library.*.json")
    assert json.loads(copy.read_text()) == first
    assert parsed_library(files, copies) == first  # read back from the copy

    # an edited file is parsed again; the copy of its old text goes
    files[0].write_text(files[0].read_text() + "\n# edited\n")
    assert parsed_library(files, copies) == first
    (newer,) = copies.glob("library.*.json")
    assert newer != copy


def test_a_damaged_or_unwritable_copy_costs_only_the_parse(tmp_path: Path) -> None:
    files, copies = _library_copy(tmp_path)
    expected = _yaml_data(files)
    parsed_library(files, copies)
    (copy,) = copies.glob("library.*.json")
    copy.write_text('{"blocks": {')  # cut short
    assert parsed_library(files, copies) == expected
    assert json.loads(copy.read_text()) == expected  # written again

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    assert parsed_library(files, blocked / "__pycache__") == expected  # cannot be created


def test_ops_nested_past_the_limit_are_one_error() -> None:
    """Each op is validated on its own, out of sight of pydantic's own depth limit; loops nested
    past 64 are refused in one line, as pydantic refused them."""
    import resnet_compiler as rc
    from resnet_compiler.language.tagged_choice import MAX_NESTING

    def nested(depth: int) -> dict:
        op: dict = {"op": "relu"}
        for _ in range(depth):
            op = {"repeat": 1, "ops": [op]}
        return {**yaml.safe_load(SMALL), "blocks": {"b": {"branch": [op]}},
                "stages": [{"block": "b", "depth": 1, "channels": 8}]}

    with pytest.raises(rc.SpecError) as e:
        rc.compile(nested(MAX_NESTING + 5))
    (line,) = str(e.value).splitlines()
    assert line.endswith(f"ops nest more than {MAX_NESTING} deep (got dict)"), line
