"""Arithmetic expressions in block templates (`channels * expansion`).

An expression is parsed once into a whitelisted Python AST, evaluated here with Python's own
semantics, and rendered back verbatim into generated code. Because both sides run the same
arithmetic on the same values, the compiler's numbers and the emitted module's numbers agree.
Nothing outside the whitelist (attributes, calls other than a few builtins, subscripts, lambdas,
strings) is accepted, so a spec can never smuggle code into the generated source.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

Value = int | float | bool

FUNCTIONS = {"max": max, "min": min, "int": int, "round": round, "abs": abs}
MAX_EXPRESSION_LENGTH = 200

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_CMPOPS = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


class ExprError(ValueError):
    """An expression that cannot be parsed or evaluated."""


class Expr:
    """A validated expression: `names` are the variables it reads."""

    __slots__ = ("source", "tree", "names")

    def __init__(self, source: str):
        if len(source) > MAX_EXPRESSION_LENGTH:
            raise ExprError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as e:
            raise ExprError(f"cannot parse expression {source!r}: {e.msg}") from None
        self.names: set[str] = set()
        self._check(tree.body)
        self.tree = tree
        self.source = ast.unparse(tree)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExprError(f"only numbers are allowed in expressions, not {node.value!r}")
        elif isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise ExprError(f"name {node.id!r} is not allowed")
            self.names.add(node.id)
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v)
        elif isinstance(node, ast.Compare) and all(type(o) in _CMPOPS for o in node.ops):
            self._check(node.left)
            for c in node.comparators:
                self._check(c)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in FUNCTIONS and not node.keywords):
            for a in node.args:
                self._check(a)
        else:
            raise ExprError(f"unsupported syntax in expression: {ast.unparse(node)!r}")

    def evaluate(self, env: Mapping[str, Value]) -> Value:
        missing = sorted(n for n in self.names if n not in env and n not in FUNCTIONS)
        if missing:
            raise ExprError(f"unknown name {missing[0]!r} in {self.source!r}"
                            f" (known: {', '.join(sorted(env))})")
        try:
            return _eval(self.tree.body, env)
        except (ArithmeticError, ValueError, TypeError, OverflowError) as e:
            raise ExprError(f"cannot evaluate {self.source!r}: {e}") from None

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expr) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


def _eval(node: ast.AST, env: Mapping[str, Value]) -> Value:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.Mult) and max(abs(a), abs(b)) > 1e12:
            raise OverflowError("value too large")
        return _BINOPS[type(node.op)](a, b)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env)
        return (not v) if isinstance(node.op, ast.Not) else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](*[_eval(a, env) for a in node.args])
    raise ExprError(f"unsupported syntax: {ast.unparse(node)!r}")


def as_expr(value: Value | str | Expr) -> Expr:
    """Numbers become constant expressions, strings are parsed."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, str):
        return Expr(value)
    return Expr(repr(value))
