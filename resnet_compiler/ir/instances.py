"""The nodes of one block instance: its ops, module calls and loops expanded with the block's
values, relative to the block's prefix (a module call's ops under the call's name, a loop's copies
under `name.i`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from ..language.expr import Expr, ExprError, Value
from ..language.references import same_kind
from ..ops import REGISTRY, OpDef
from .templates import Item, LoopTemplate, OpTemplate, Origin
from .wiring import BLOCK_INPUT, parse_ref

Port = tuple[str, int | None]  # a node relative to the block ("" is its input), and a part


@dataclass(frozen=True)
class Node:
    """A node of a block's expansion, relative to the block's prefix."""

    name: str
    data: dict[str, Any]
    inputs: tuple[Port, ...]
    roles: tuple[str, ...]


def annotate(opdef: OpDef, attrs: dict[str, Any], in_shapes: list[tuple[int, ...]],
              shape: tuple[int, ...]) -> dict[str, Any]:
    tensors = opdef.tensors(attrs)
    attrs["shape"] = shape
    attrs["tensors"] = tensors
    attrs["params"] = opdef.params(attrs, tensors)
    attrs["macs"] = opdef.macs(attrs, in_shapes, shape)
    attrs["acts"] = opdef.acts(attrs, shape)
    return attrs


MAX_REPEAT = 64


class BlockBody:
    """The nodes of one block instance: its ops, module calls (their ops under the call's name)
    and loops (each copy's ops under `name.i`), relative to the block's prefix."""

    def __init__(self, ex: Any, block_id: str, origin: Origin, in_shape: tuple[int, ...]):
        self.ex, self.block_id, self.origin = ex, block_id, origin
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {"": in_shape}
        self.attrs: dict[str, dict[str, Any]] = {}

    def error(self, message: str) -> SpecError:
        return self.ex.error(self.origin, message)

    def shape(self, p: Port) -> tuple[int, ...]:
        node, part = p
        if part is None:
            return self.shapes[node]
        return REGISTRY[self.attrs[node]["op"]].part_shape(self.attrs[node], self.shapes[node], part)

    def ports(self, ref: str, env: Mapping[str, Value], where: Mapping[str, Any]) -> list[Port]:
        """The values `ref` names: one, or every part or copy for `name[*]`."""
        base, part = parse_ref(ref)
        value = where[base]
        if isinstance(value, list):  # a loop's copies
            if part == "*":
                return list(value)
            index = self.index(ref, part, env, len(value))
            return [value[index]]
        node, _ = value
        if part is None:
            return [value]
        data = self.attrs.get(node)
        if data is None or not REGISTRY[data["op"]].has_parts:
            raise self.error(f"{self.block_id}: {ref!r}: {base!r} has no parts")
        n = len(data["sizes"])
        if part == "*":
            return [(node, k) for k in range(n)]
        return [(node, self.index(ref, part, env, n))]

    def index(self, ref: str, part: Any, env: Mapping[str, Value], n: int) -> int:
        if isinstance(part, int):
            k = part
        else:
            try:
                k = Expr.parse(part).evaluate(env)
            except ExprError as e:
                raise self.error(f"{self.block_id}: {ref!r}: {e}") from None
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n:
            raise self.error(f"{self.block_id}: {ref!r}: index {k!r} is outside 0..{n - 1}"
                             f" (there are {n})")
        return k

    def port(self, ref: str, env: Mapping[str, Value], where: Mapping[str, Any]) -> Port:
        (p,) = self.ports(ref, env, where)
        return p

    def count(self, loop: LoopTemplate, env: Mapping[str, Value]) -> int:
        try:
            n = loop.count.evaluate(env)
        except ExprError as e:
            raise self.error(f"{self.block_id}: repeat: {e}") from None
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEAT:
            raise self.error(f"{self.block_id}: repeat: {loop.count.source} = {n!r}; a loop"
                             f" count must be a whole number from 1 to {MAX_REPEAT}")
        return n

    def run(self, items: tuple[Item, ...], env: Mapping[str, Value], where: dict[str, Any],
            prefix: str, chain: bool = False) -> Port:
        """Expand `items`; a chain (the projection) starts at `where["x"]` and runs in order,
        a body reads the values its ops name. Returns the last value."""
        last: Port = where[BLOCK_INPUT]
        for item in items:
            if isinstance(item, LoopTemplate):
                copies: dict[str, list[Port]] = {op.name: [] for op in item.body}
                n = self.count(item, env)
                for i in range(n):
                    inner = {**env, item.index: i}
                    local = {**where, **copies}
                    for op in item.body:
                        last = self.op(op, inner, local, f"{prefix}{op.name}.{i}", False, last)
                        copies[op.name].append(local[op.name])
                where.update(copies)
                continue
            last = self.op(item, env, where, prefix + item.name, chain, last)
        return last

    def op(self, op: OpTemplate, env: Mapping[str, Value], where: dict[str, Any], node: str,
           chain: bool, last: Port) -> Port:
        """Expand one op (or module call) as node `node`; its value goes into `where`."""
        label = f"{self.block_id}.{node}"
        if op.when is not None and not self.ex.condition(op, env, self.block_id, self.origin):
            first = last if chain else self.ports(op.inputs[0], env, where)[0]
            where[op.name] = first
            return first
        ports = [last] if chain else [p for r in op.inputs for p in self.ports(r, env, where)]
        if op.module is not None:
            if len(ports) != 1:
                raise self.error(f"{label}: a module takes one input, got {len(ports)}")
            out = self.call(op, env, ports[0], node + ".")
            where[op.name] = out
            return out

        def fail(key: str, msg: str) -> SpecError:
            return self.error(f"{label}.{key}: {msg}")
        values = self.ex.evaluate(op, env, fail)
        refs = None if chain else [f"{r}" for r in op.inputs]
        data = self.ex.make_node(op, values, [self.shape(p) for p in ports], label, self.origin,
                                 refs if refs and len(refs) == len(ports) else None)
        if data is None:
            where[op.name] = ports[0]
            return ports[0]
        self.nodes.append(Node(node, data, tuple(ports), ("input",) * len(ports)))
        self.shapes[node], self.attrs[node] = data["shape"], data
        where[op.name] = (node, None)
        return (node, None)

    def call(self, op: OpTemplate, env: Mapping[str, Value], x: Port, prefix: str) -> Port:
        """A module call: its params from the call's expressions, its ops under `prefix`."""
        t = op.module
        assert t is not None
        inner: dict[str, Value] = {"in_channels": self.shape(x)[0], **t.params}
        for key, e in op.exprs.items():
            try:
                value = e.evaluate(env)
            except ExprError as err:
                raise self.error(f"{self.block_id}.{op.name}.{key}: {err}") from None
            if not same_kind(t.params[key], value):
                raise self.error(f"{self.block_id}.{op.name}.{key}: {e.source} = {value!r}; must"
                                 f" be like the module's default {t.params[key]!r}")
            inner[key] = value
        for condition, message in t.checks:
            try:
                failed = condition.evaluate(inner)
            except ExprError as err:
                raise self.error(f"{self.block_id}.{op.name}: module check: {err}") from None
            if failed:
                raise self.error(f"{self.block_id}.{op.name}: {message}")
        for var, e in t.vars:
            try:
                inner[var] = e.evaluate(inner)
            except ExprError as err:
                raise self.error(f"{self.block_id}.{op.name}: module var {var!r}: {err}") from None
        where: dict[str, Any] = {BLOCK_INPUT: x}
        self.run(t.body, inner, where, prefix)
        return self.port(t.output, inner, where)
