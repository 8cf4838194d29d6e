"""Channel counts as source text for the generated constructors.

An op states its channel rule once, as arithmetic in `OpDef.channels` / `OpDef.part_channels`:
the compiler runs it on ints, and the PyTorch emitter runs the same code on `Channels` terms,
whose `+`, `*` and `//` build source text over the constructor's arguments (`width * 2`,
`out_channels // radix`). The text is then simplified as a reviewer would write it: redundant
brackets dropped and `(a * b) // b` cancelled.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..ops.base import text

if TYPE_CHECKING:
    from ..ops import OpDef


# ---- simplified source text --------------------------------------------------------------------

class _Substitute(ast.NodeTransformer):
    def __init__(self, mapping: Mapping[str, str]):
        self.mapping = {k: ast.parse(v, mode="eval").body for k, v in mapping.items()}

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return self.mapping.get(node.id, node)


def _simplify(node: ast.AST) -> ast.AST:
    """Cancel `(a * b) // b` and `(a * b) / b` (a module's width times radix, split in radix)."""
    for child in ast.iter_child_nodes(node):
        _simplify(child)
    for field, value in ast.iter_fields(node):
        if isinstance(value, ast.AST):
            setattr(node, field, _cancel(value))
    return node


def _cancel(node: ast.AST) -> ast.AST:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv) \
            and isinstance(node.left, ast.BinOp) and isinstance(node.left.op, ast.Mult):
        d = ast.dump(node.right)
        if ast.dump(node.left.right) == d:
            return node.left.left
        if ast.dump(node.left.left) == d:
            return node.left.right
    return node


def simplify(text: str, mapping: Mapping[str, str] | None = None) -> str:
    """Channel text with names replaced by `mapping`'s texts and products cancelled."""
    tree = ast.parse(text, mode="eval")
    if mapping:
        tree = _Substitute(mapping).visit(tree)
    wrapper = _simplify(ast.Expression(body=_cancel(_simplify(tree.body))))
    return ast.unparse(ast.fix_missing_locations(wrapper))


# ---- terms the channel rules compute on --------------------------------------------------------

class Channels:
    """A channel count as source text. Arithmetic with other terms or ints builds the text of
    the result (operands bracketed; `simplify` drops the brackets that are not needed).

    `total` is what the term adds up to: the same count, except for every copy of a loop's value
    or every part of a split read at once (`name[*]`), which stands for one copy's channels
    (`source`) where a rule keeps its input's, and for all of them together where it adds its
    inputs' (a concat along channels)."""

    __slots__ = ("source", "total")

    def __init__(self, source: str, total: str | None = None):
        self.source = source
        self.total = source if total is None else total

    def __add__(self, other: object) -> Channels:
        if not isinstance(other, (Channels, int)):
            return NotImplemented
        return Channels(f"({self.total}) + ({_total(other)})")

    def __radd__(self, other: object) -> Channels:
        if other == 0:  # the start of sum(): 0 + a is a
            return Channels(self.total)
        if not isinstance(other, int):
            return NotImplemented
        return Channels(f"({other}) + ({self.total})")

    def __mul__(self, other: object) -> Channels:
        if not isinstance(other, (Channels, int)):
            return NotImplemented
        return Channels(f"({self.source}) * ({_source(other)})")

    def __rmul__(self, other: object) -> Channels:
        if not isinstance(other, int):
            return NotImplemented
        return Channels(f"({other}) * ({self.source})")

    def __floordiv__(self, other: object) -> Channels:
        if not isinstance(other, (Channels, int)):
            return NotImplemented
        return Channels(f"({self.source}) // ({_source(other)})")

    def __rfloordiv__(self, other: object) -> Channels:
        if not isinstance(other, int):
            return NotImplemented
        return Channels(f"({other}) // ({self.source})")

    def __eq__(self, other: object) -> bool:
        """Equal when the texts are: a rule's `c == 1` holds only where the count is written 1."""
        if isinstance(other, (Channels, int)) and not isinstance(other, bool):
            return simplify(self.source) == simplify(_source(other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(simplify(self.source))

    def __repr__(self) -> str:
        return f"Channels({self.source!r})"


def _source(value: Channels | int) -> str:
    return value.source if isinstance(value, Channels) else str(value)


def _total(value: Channels | int) -> str:
    return value.total if isinstance(value, Channels) else str(value)


def render(value: Channels | int) -> str:
    """A rule's result as simplified source text."""
    return simplify(_source(value))


def terms(opdef: OpDef, code: Mapping[str, Any]) -> dict[str, Any]:
    """An op's attributes as code (`code_of`) for its channel rule: whole-number fields become
    `Channels` terms (each item of a list of them too); flags and choices stay values."""
    out = dict(code)
    for key, value in code.items():
        if key in opdef.sizes:
            out[key] = Channels(text(value))
        elif key in opdef.size_lists:
            out[key] = [Channels(text(v)) for v in value]
    return out


def rule_channels(opdef: OpDef, code: Mapping[str, Any], inputs: Sequence[Channels | str]) -> str:
    """The op's output channels as source text, from each input's (text or term)."""
    ins = [i if isinstance(i, Channels) else Channels(i) for i in inputs]
    return render(opdef.channels(terms(opdef, code), ins))


def rule_part_channels(opdef: OpDef, code: Mapping[str, Any], whole: str, part: int) -> str:
    """Part `part`'s channels as source text (ops with parts), from the whole value's."""
    return render(opdef.part_channels(terms(opdef, code), Channels(whole), part))


__all__ = ["Channels", "render", "rule_channels", "rule_part_channels", "simplify", "terms"]
