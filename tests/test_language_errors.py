"""Bad uses of the grown language: one line naming the place and the problem, exit 2."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import run_cli

BASE: dict[str, Any] = {
    "name": "t", "input": {"channels": 3, "height": 32, "width": 32}, "num_classes": 4,
    "stem": [{"op": "conv", "name": "conv1", "channels": 8, "kernel": 3}],
    "stages": [{"block": "basic", "depth": 2, "channels": 8}],
}


def _with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = spec
        for key in parents:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[leaf] = value
    return spec


USER_BLOCK = {"params": {"k": 3}, "vars": {"depth_log": "log2(k - 3)"}, "branch": [
    {"op": "conv", "channels": "channels", "kernel": 3}]}
COND_BLOCK = {"params": {"k": 3}, "branch": [
    {"op": "conv", "channels": "channels", "kernel": 3},
    {"op": "relu", "when": "k + 1"}]}

CASES = {
    "gn groups": (_with(stem=[*BASE["stem"], {"op": "gn", "groups": 3}]),
                  "stem[1]: gn1: groups=3 must divide the channels (8)"),
    "unknown act": (_with(defaults__act="swishh"),
                    "defaults.act: the act that replaces relu: fn: must be 'relu'"),
    "unknown act fn": (_with(stem=[*BASE["stem"], {"op": "act", "fn": "swishh"}]),
                       "stem[1].fn: must be 'relu'"),
    "drop rate 1": (_with(defaults__drop_path_rate=1.0), "defaults.drop_path_rate: must be less than 1"),
    "negative drop rate": (_with(stem=[*BASE["stem"], {"op": "drop_path", "rate": -0.1}]),
                           "stem[1].rate"),
    "dilation 0": (_with(stages__0__dilation=0), "stages[0].dilation: must be greater than 0"),
    "output stride 4": (_with(output_stride=4), "output_stride: must be 8, 16 or 32"),
    "log2 of 0": (_with(blocks={"mine": USER_BLOCK}, stages=[{"block": "mine", "depth": 1,
                                                               "channels": 8}]),
                  "block var 'depth_log': cannot evaluate 'log2(k - 3)': log2 of 0"),
    "condition not boolean": (_with(blocks={"mine": COND_BLOCK}, stages=[
        {"block": "mine", "depth": 1, "channels": 8}]),
        "a condition must be true or false"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    spec, expected = CASES[case]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    r = run_cli(path, "--check")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert expected in lines[0], lines[0]
