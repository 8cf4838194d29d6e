"""Expression errors read like every other spec error: `file:line: spec.path: what is wrong`,
exit 2, for every function at the edges of its domain, division by zero and overflow, wherever
an expression may be written (block vars, op fields, `when`, out_channels, loop counts, module
vars and call params, the stem)."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

import resnet_compiler as rc
from resnet_compiler.errors import SpecError
from resnet_compiler.language.expr import Expr, ExprError

BASE: dict[str, Any] = {
    "name": "tiny", "input": {"channels": 3, "height": 16, "width": 16}, "num_classes": 4,
    "modules": {"gate": {"params": {"ratio": 0.5}, "vars": {"hidden": "max(1, int(in_channels * ratio))"},
                         "ops": [{"op": "conv", "name": "fc", "channels": "hidden", "kernel": 1},
                                 {"op": "conv", "name": "back", "channels": "in_channels",
                                  "kernel": 1}]}},
    "blocks": {"mine": {
        "params": {"k": 3, "parts": 2}, "vars": {"width": "channels * 2"},
        "ops": [{"op": "conv", "name": "conv1", "channels": "width", "kernel": "k",
                 "stride": "stride"},
                {"op": "bn", "name": "bn1", "when": "k > 1"},
                {"op": "split", "name": "halves", "parts": "parts"},
                {"repeat": "parts", "ops": [{"op": "relu", "name": "acts",
                                             "input": "halves[i]"}]},
                {"op": "concat", "name": "joined", "input": "acts[*]"},
                {"op": "gate", "name": "attn", "ratio": 0.5},
                {"op": "conv", "name": "conv2", "channels": "out_channels", "kernel": 1}],
        "out_channels": "channels"}},
    "stem": [{"op": "conv", "name": "conv1", "channels": 8, "kernel": 3}],
    "stages": [{"block": "mine", "depth": 1, "channels": 8}],
}

# (where in the spec, its path in messages)
SLOTS = {
    "var": (("blocks", "mine", "vars", "width"), "blocks.mine.vars.width"),
    "op field": (("blocks", "mine", "ops", 0, "channels"), "blocks.mine.ops[0].channels"),
    "kernel": (("blocks", "mine", "ops", 0, "kernel"), "blocks.mine.ops[0].kernel"),
    "when": (("blocks", "mine", "ops", 1, "when"), "blocks.mine.ops[1].when"),
    "repeat": (("blocks", "mine", "ops", 3, "repeat"), "blocks.mine.ops[3].repeat"),
    "out_channels": (("blocks", "mine", "out_channels"), "blocks.mine.out_channels"),
    "module var": (("modules", "gate", "vars", "hidden"), "modules.gate.vars.hidden"),
    "module call param": (("blocks", "mine", "ops", 5, "ratio"), "blocks.mine.ops[5].ratio"),
    "stem": (("stem", 0, "channels"), "stem[0].channels"),
}
LIMIT = "is beyond the limit of 1e+12 on any value in an expression"
# every function at the edges of its domain, and the operators that can fail
EDGES = [
    ("log2(0)", "log2 of 0: the argument must be positive"),
    ("log2(-8)", "log2 of -8: the argument must be positive"),
    ("log2(0.0)", "log2 of 0.0: the argument must be positive"),
    ("log2()", "log2() takes 1 argument, not 0"),
    ("make_divisible(8, 0)", "make_divisible of 8 by 0: the divisor must be at least 1"),
    ("make_divisible(8, divisor=-4)", "make_divisible of 8 by -4: the divisor must be at least 1"),
    ("make_divisible()", "make_divisible() takes 1 to 4 arguments, not 0"),
    ("make_divisible(8, 8, 8, 0.9, 1)", "make_divisible() takes 1 to 4 arguments, not 5"),
    ("int(1e309)", "1e309 is not a finite number"),
    ("int(-1e309)", "1e309 is not a finite number"),
    ("int()", "int() takes 1 argument, not 0"),
    ("int(2.5, 3)", "int() takes 1 argument, not 2"),
    ("round(1, 2, 3)", "round() takes 1 to 2 arguments, not 3"),
    ("ceil()", "ceil() takes 1 argument, not 0"),
    ("floor(1e12 * 10)", f"value too large: 1e+13 {LIMIT}"),
    ("abs(1, 2)", "abs() takes 1 argument, not 2"),
    ("max()", "max() takes at least 2 arguments, not 0"),
    ("max(8)", "max() takes at least 2 arguments, not 1"),
    ("min(8)", "min() takes at least 2 arguments, not 1"),
    ("8 // 0", "8 // 0: division by zero"),
    ("8 / 0", "8 / 0: division by zero"),
    ("8 % 0", "8 % 0: division by zero"),
    ("8 // (2 - 2)", "8 // 0: division by zero"),
    ("1000000 * 1000000 * 10", f"value too large: 1.0000e+13 {LIMIT}"),
    ("-1000000 * 1000000 * 10", f"value too large: -1.0000e+13 {LIMIT}"),
    ("1e300 * 1e300", f"value too large: inf {LIMIT}"),
    # a constant part that fails is wrong whatever the names are: reported where it is written
    ("in_channels * log2(0)", "log2 of 0: the argument must be positive"),
    ("max(in_channels, 8 // 0)", "8 // 0: division by zero"),
]


def _spec_with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    holder = spec
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return spec


def _compile_file(tmp_path: Path, spec: dict[str, Any]) -> tuple[int, list[str], Path]:
    from resnet_compiler.cli import main
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    err = io.StringIO()
    out = tmp_path / "model.py"
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(path), "--emit", "torch", "-o", str(out)])
    assert not out.exists()
    return code, err.getvalue().strip().splitlines(), path


def _line_of(text: str, key: str) -> int:
    """The line a key is written on in the dumped YAML (its last occurrence under `key`)."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith(key))


def test_the_base_spec_compiles() -> None:
    assert rc.compile(BASE).total_params > 0


@pytest.mark.parametrize("slot", sorted(SLOTS))
@pytest.mark.parametrize("expression, reason", EDGES)
def test_every_edge_in_every_slot(tmp_path: Path, slot: str, expression: str,
                                  reason: str) -> None:
    where, shown = SLOTS[slot]
    code, lines, path = _compile_file(tmp_path, _spec_with(where, expression))
    assert code == 2, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    head = f"{path}:"
    assert lines[0].startswith(head), lines
    line, rest = lines[0][len(head):].split(": ", 1)
    assert line.isdigit(), lines
    assert rest.startswith(f"{shown}: {reason}"), lines
    assert "ExprError" not in rest and "cannot evaluate" not in rest, lines


def test_the_line_is_the_expression_s_own(tmp_path: Path) -> None:
    """`file:line` points at the line the bad expression is written on."""
    code, lines, path = _compile_file(tmp_path, _spec_with(("blocks", "mine", "vars", "width"),
                                                           "log2(0)"))
    text = path.read_text()
    want = next(i for i, line in enumerate(text.splitlines(), 1) if "log2(0)" in line)
    assert lines == [f"{path}:{want}: blocks.mine.vars.width: log2 of 0: the argument must be "
                     "positive"]


@pytest.mark.parametrize("expression, reason", [
    ("log2(channels - 8)", "log2 of 0: the argument must be positive"),
    ("make_divisible(channels, channels - 8)", "make_divisible of 8 by 0: the divisor must be "
                                               "at least 1"),
    ("channels // (channels - 8)", "8 // 0: division by zero"),
    ("channels * 1000000 * 1000000", f"value too large: 8.0000e+12 {LIMIT}"),
])
def test_errors_that_depend_on_a_stage_name_the_stage(tmp_path: Path, expression: str,
                                                      reason: str) -> None:
    """An expression fine for some params and not for others: the stage that gives the
    failing values is the place, with the expression and the reason."""
    code, lines, path = _compile_file(tmp_path, _spec_with(("blocks", "mine", "vars", "width"),
                                                           expression))
    stage_line = _line_of(path.read_text(), "- block: mine")
    assert code == 2 and lines == [
        f"{path}:{stage_line}: stages[0]: block var 'width': cannot evaluate "
        f"{Expr.parse(expression).source!r}: {reason}"], lines


def test_api_raises_spec_errors_not_expression_errors() -> None:
    with pytest.raises(SpecError) as e:
        rc.compile(_spec_with(("blocks", "mine", "vars", "width"), "log2(0)"))
    assert not isinstance(e.value, ExprError)
    assert e.value.problems[0].path == "blocks.mine.vars.width"


@pytest.mark.parametrize("expression", ["log2(8)", "make_divisible(8, 3)", "int(2.9)",
                                        "round(2.5, 1)", "ceil(0.5)", "floor(-0.5)",
                                        "abs(-3)", "max(1, 2, 3)", "min(4, 5)", "7 // 2",
                                        "7 % 3", "7 / 2", "999999 * 1000000"])
def test_values_inside_the_domain_still_evaluate(expression: str) -> None:
    value = Expr.parse(expression).evaluate({})
    assert value == eval(expression, {"log2": __import__("math").log2,  # noqa: S307 - the reference
                                      "ceil": __import__("math").ceil,
                                      "floor": __import__("math").floor,
                                      "make_divisible": __import__(
                                          "resnet_compiler.language.expr",
                                          fromlist=["make_divisible"]).make_divisible})
