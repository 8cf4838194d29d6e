"""Arithmetic expressions in block templates (`channels * expansion`).

An expression is parsed once into a whitelisted Python AST, compiled into a tree of small Python
closures that evaluate it with Python's own semantics, and rendered back verbatim into generated
code. Because both sides run the same arithmetic on the same values, the compiler's numbers and
the emitted module's numbers agree. Nothing outside the whitelist (attributes, calls other than a
few named functions, subscripts, lambdas, strings) is accepted, so a spec can never smuggle code
into the generated source; nothing is ever passed to `eval`.

Parsing is memoised by source text: a design-space sweep compiles thousands of specs that share
the same few dozen expressions.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

Value = int | float | bool
Env = Mapping[str, Value]
Evaluator = Callable[[Env], Value]

MAX_EXPRESSION_LENGTH = 200
MAX_MAGNITUDE = 1e12


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None,
                   round_limit: float = 0.9) -> int:
    """`value` rounded to the nearest multiple of `divisor` (at least `min_value`, default the
    divisor); one more step up when rounding lost more than 1 - round_limit of it. The rule
    timm uses for SE widths (with round_limit 0) and for channel counts (0.9)."""
    if divisor < 1:
        raise ValueError(f"make_divisible of {value!r} by {divisor!r}: the divisor must be at"
                         " least 1")
    floor_value = divisor if min_value is None else min_value
    rounded = max(floor_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded


# The same function in the generated code (which imports nothing but torch and math).
MAKE_DIVISIBLE_SOURCE = '''
def make_divisible(
    value: float,
    divisor: int = 8,
    min_value: int | None = None,
    round_limit: float = 0.9,
) -> int:
    """`value` rounded to a multiple of `divisor`, at least `min_value` (timm's)."""
    rounded = max(
        divisor if min_value is None else min_value,
        int(value + divisor / 2) // divisor * divisor,
    )
    return rounded + divisor if rounded < round_limit * value else rounded
'''


def _log2(value: float) -> float:
    if value <= 0:
        raise ValueError(f"log2 of {value!r}: the argument must be positive")
    return math.log2(value)


def _to_whole(name: str, fn: Callable[[float], int]) -> Callable[..., int]:
    """int, round, ceil and floor, refusing what has no whole number (inf, nan) in the words
    of the other domain errors."""
    def whole(value: float, *rest: int) -> int:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} of {value!r}: the argument must be a finite number")
        return fn(value, *rest)
    return whole


FUNCTIONS: dict[str, Callable[..., Value]] = {
    "max": max, "min": min, "int": _to_whole("int", int), "round": _to_whole("round", round),
    "abs": abs, "make_divisible": make_divisible, "log2": _log2,
    "ceil": _to_whole("ceil", math.ceil), "floor": _to_whole("floor", math.floor),
}
# How many positional arguments each function takes (at least, at most).
ARITY = {"max": (2, 64), "min": (2, 64), "int": (1, 1), "round": (1, 2), "abs": (1, 1),
         "make_divisible": (1, 4), "log2": (1, 1), "ceil": (1, 1), "floor": (1, 1)}
# Keyword arguments a function accepts in an expression.
KEYWORDS = {"make_divisible": frozenset({"divisor", "min_value", "round_limit"})}
# Functions the generated code must define or import when an expression uses them.
MATH_FUNCTIONS = frozenset({"log2", "ceil", "floor"})

_BINOPS: dict[type, Callable[[Value, Value], Value]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_SYMBOLS = {ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}
_CMPOPS: dict[type, Callable[[Value, Value], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}


class ExprError(ValueError):
    """An expression that cannot be parsed or evaluated. `reason` is what is wrong without the
    expression's text (`log2 of 0: the argument must be positive`), for messages that already
    point at where the expression is written."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class Expr:
    """A validated expression: `source` is its normalised text, `names` the variables it reads,
    `functions` the functions it calls. Build with `Expr.parse` to share parsed instances."""

    __slots__ = ("functions", "names", "source", "_evaluate", "_constant_error")

    _cache: dict[str, Expr] = {}

    def __init__(self, source: str):
        if len(source) > MAX_EXPRESSION_LENGTH:
            raise ExprError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as e:
            raise ExprError(f"cannot parse expression {source!r}: {e.msg}") from None
        self.names: frozenset[str]
        self.functions: frozenset[str]
        names: set[str] = set()
        functions: set[str] = set()
        self._evaluate = _compile(tree.body, names, functions)
        self._constant_error: ExprError | None | bool = False  # not looked for yet
        self.names = frozenset(names)
        self.functions = frozenset(functions)
        self.source = ast.unparse(tree)

    @classmethod
    def parse(cls, source: str | int | float) -> Expr:
        """The parsed expression for `source` (numbers become constants), memoised."""
        text = source if isinstance(source, str) else repr(source)
        found = cls._cache.get(text)
        if found is None:
            found = cls(text)
            if len(cls._cache) < 100_000:
                cls._cache[text] = found
        return found

    @property
    def constant(self) -> bool:
        return not self.names

    def partial(self, known: Mapping[str, Value]) -> Expr:
        """This expression with `known` names replaced by their values and what that makes
        constant folded (`1 if aa else stride` with aa false is `stride`), so generated code does
        not carry switches a template never uses."""
        if not self.names & known.keys():
            return self
        tree = _Fold(known).visit(ast.parse(self.source, mode="eval"))
        return Expr.parse(ast.unparse(ast.fix_missing_locations(tree)))

    def evaluate(self, env: Env) -> Value:
        try:
            return self._evaluate(env)
        except KeyError as e:
            name = e.args[0]
            raise ExprError(f"unknown name {name!r} in {self.source!r}"
                            f" (known: {', '.join(sorted(env))})") from None
        except RecursionError:
            raise ExprError(f"cannot evaluate {self.source!r}: nested too deeply",
                            "the expression is nested too deeply") from None
        except (ArithmeticError, ValueError, TypeError) as e:
            reason = str(e) or type(e).__name__
            raise ExprError(f"cannot evaluate {self.source!r}: {reason}", reason) from None

    def constant_error(self) -> ExprError | None:
        """The error of the first part without names that cannot be evaluated (`log2(0)` in
        `channels * log2(0)`): wrong whatever values the names take. Parts a condition may skip
        (the branches of `a if c else b`, the later operands of `and`/`or`) are not looked at."""
        if self._constant_error is False:
            self._constant_error = _first_constant_error(ast.parse(self.source, mode="eval").body)
        return self._constant_error  # type: ignore[return-value]

    def value_or_none(self) -> Value | None:
        """A constant's value, or None when it has names or cannot be evaluated (the error is
        reported where the expression is checked)."""
        if not self.constant:
            return None
        try:
            return self.evaluate({})
        except ExprError:
            return None

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expr) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


class _Fold(ast.NodeTransformer):
    """Substitute known names and fold the parts that become constant."""

    def __init__(self, known: Mapping[str, Value]):
        self.known = known

    @staticmethod
    def _const(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Constant(self.known[node.id]) if node.id in self.known else node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        node = self.generic_visit(node)
        if self._const(node.test):
            return node.body if node.test.value else node.orelse
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        node = self.generic_visit(node)
        stop = isinstance(node.op, ast.Or)  # the value that decides: True for or, False for and
        rest = []
        for value in node.values:
            if self._const(value):
                if bool(value.value) is stop:
                    return ast.Constant(stop)
                continue
            rest.append(value)
        if not rest:
            return ast.Constant(not stop)
        return rest[0] if len(rest) == 1 else ast.BoolOp(node.op, rest)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        node = super().generic_visit(node)
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call)):
            parts = [n for n in ast.iter_child_nodes(node) if isinstance(n, ast.expr)]
            if isinstance(node, ast.Call):
                parts = [*node.args, *(kw.value for kw in node.keywords)]
            if all(self._const(p) for p in parts):
                try:
                    value = Expr(ast.unparse(node)).evaluate({})
                except ExprError:
                    return node
                return ast.Constant(value)
        return node


def _first_constant_error(node: ast.AST) -> ExprError | None:
    functions = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
    if isinstance(node, (ast.Call, ast.BinOp, ast.UnaryOp)) and not any(
            isinstance(n, ast.Name) and id(n) not in functions for n in ast.walk(node)):
        try:
            Expr(ast.unparse(node)).evaluate({})
        except ExprError as e:
            return e
        return None
    if isinstance(node, ast.IfExp):
        children: list[ast.AST] = [node.test]
    elif isinstance(node, ast.BoolOp):
        children = node.values[:1]
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        found = _first_constant_error(child)
        if found is not None:
            return found
    return None


def _number(value: Value) -> Value:
    if isinstance(value, (int, float)) and not abs(value) <= MAX_MAGNITUDE:  # nan too
        shown = f"{value:.4g}" if isinstance(value, float) else f"{value:.4e}"
        raise OverflowError(f"value too large: {shown} is beyond the limit of {MAX_MAGNITUDE:g}"
                            " on any value in an expression")
    return value


def _binary(node: ast.BinOp, left: Evaluator, right: Evaluator) -> Evaluator:
    fn = _BINOPS[type(node.op)]
    symbol = _SYMBOLS.get(type(node.op))

    def binary(env: Env) -> Value:
        a, b = left(env), right(env)
        if symbol is not None and b == 0:
            raise ZeroDivisionError(f"{a!r} {symbol} {b!r}: division by zero")
        return _number(fn(a, b))
    return binary


def _compile(node: ast.AST, names: set[str], functions: set[str]) -> Evaluator:
    """A closure that evaluates the whitelisted `node`; collects the names it reads."""
    if isinstance(node, ast.Constant):
        value = node.value
        if not isinstance(value, (int, float)):  # bool is an int: True and False are allowed
            raise ExprError(f"only numbers and True/False are allowed in expressions, not {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ExprError(f"{ast.unparse(node)} is not a finite number")
        return lambda env: value
    if isinstance(node, ast.Name):
        name = node.id
        if name.startswith("_"):
            raise ExprError(f"name {name!r} is not allowed")
        names.add(name)
        return lambda env: env[name]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _binary(node, _compile(node.left, names, functions),
                       _compile(node.right, names, functions))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        operand = _compile(node.operand, names, functions)
        if isinstance(node.op, ast.Not):
            return lambda env: not operand(env)
        if isinstance(node.op, ast.USub):
            return lambda env: -operand(env)
        return operand
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v, names, functions) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda env: all(p(env) for p in parts)
        return lambda env: any(p(env) for p in parts)
    if isinstance(node, ast.Compare) and all(type(o) in _CMPOPS for o in node.ops):
        first = _compile(node.left, names, functions)
        rest = [(_CMPOPS[type(o)], _compile(c, names, functions))
                for o, c in zip(node.ops, node.comparators, strict=True)]

        def compare(env: Env) -> bool:
            left = first(env)
            for fn, comp in rest:
                right = comp(env)
                if not fn(left, right):
                    return False
                left = right
            return True
        return compare
    if isinstance(node, ast.IfExp):
        test, body, orelse = (_compile(n, names, functions)
                              for n in (node.test, node.body, node.orelse))
        return lambda env: body(env) if test(env) else orelse(env)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        fname = node.func.id
        allowed = KEYWORDS.get(fname, frozenset())
        for kw in node.keywords:
            if kw.arg not in allowed:
                raise ExprError(f"{fname}() takes no keyword {kw.arg!r}"
                                + (f" (keywords: {', '.join(sorted(allowed))})" if allowed else ""))
        low, high = ARITY[fname]
        given = len(node.args) + len(node.keywords)
        if any(isinstance(a, ast.Starred) for a in node.args) or not low <= given <= high:
            wanted = f"{low}" if low == high else f"{low} to {high}" if high < 64 else \
                f"at least {low}"
            raise ExprError(f"{fname}() takes {wanted} argument{'s' if high > 1 else ''}, "
                            f"not {given}")
        fn = FUNCTIONS[fname]
        args = [_compile(a, names, functions) for a in node.args]
        kwargs = [(kw.arg, _compile(kw.value, names, functions)) for kw in node.keywords]
        functions.add(fname)
        return lambda env: _number(fn(*[a(env) for a in args], **{k: v(env) for k, v in kwargs}))
    raise ExprError(f"unsupported syntax in expression: {ast.unparse(node)!r}")
