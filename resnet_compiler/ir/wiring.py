"""The wiring of a block: which values each op reads, checked once per block template.

A block's ops form a small graph of named values. `x` is the block's input, each op's value is
named by its `name`, a split's parts are `name[i]`, and the residual sum is `add` (read by
`post`). An op without `input:` reads the op before it, so a plain list is still a chain. The
checks here turn every wiring mistake into one line that names the block and the value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..messages import did_you_mean
from ..ops import REGISTRY

BLOCK_INPUT = "x"
RESIDUAL = "add"
RESERVED = (BLOCK_INPUT, RESIDUAL, "downsample", "shortcut", "out", "preact")
# a block whose ops are all of it names its own shortcut and add
EXPLICIT_RESERVED = (BLOCK_INPUT, "shortcut", "out", "preact")

Fail = Callable[[tuple[Any, ...], str], Exception]


FAN_IN = "*"


def parse_ref(ref: str) -> tuple[str, int | str | None]:
    """`spx[2]` -> ("spx", 2); `sp[i - 1]` -> ("sp", "i - 1"); `xr[*]` -> ("xr", "*");
    `conv1` -> ("conv1", None)."""
    base, bracket, index = ref.partition("[")
    if not bracket:
        return base, None
    inner = index[:-1].strip()
    return (base, int(inner)) if inner.isdigit() else (base, inner)


def local_name(name: str) -> str:
    """A value's name as a Python local in the generated forward (`paths.0.act` ->
    `paths_0_act`)."""
    return name.replace(".", "_")


@dataclass(frozen=True)
class Wiring:
    """Each op's inputs (value refs), in spec order, and the branch value that meets the
    shortcut."""

    inputs: tuple[tuple[str, ...], ...]
    output: str


def flatten(ops: Sequence[Any]) -> list[tuple[Any, tuple[int, ...], int | None]]:
    """Each op of a body with its path in the spec (`(3, "ops", 1)`: op 1 of the loop at 3) and
    the position of the loop it is in (None outside loops); loops opened."""
    out: list[tuple[Any, tuple[Any, ...], int | None]] = []
    for i, op in enumerate(ops):
        if hasattr(op, "repeat"):
            out += [(inner, (i, "ops", j), i) for j, inner in enumerate(op.ops)]
        else:
            out.append((op, (i,), None))
    return out


def wire(kind: str, sections: Sequence[tuple[str, Sequence[Any]]], names: Sequence[str],
         output: str | None, projection_from: str | None, fail: Fail,
         owner: tuple[Any, ...] | None = None, reserved: Sequence[str] = RESERVED) -> Wiring:
    """Check and resolve the wiring of block (or module) `kind`; `sections` are ("branch", ops)
    and ("post", ops) (a module: one ("ops", ops)), `names` their ops' names in the same order,
    loops opened (see `flatten`)."""
    owner = owner or ("blocks", kind)
    ops = [(section, path, op, (section, loop) if loop is not None else None)
           for section, section_ops in sections for op, path, loop in flatten(section_ops)]
    where = {name: (*owner, section, *path) for name, (section, path, _, _) in zip(
        names, ops, strict=True)}
    loop_of = {name: loop for name, (_, _, _, loop) in zip(names, ops, strict=True)}
    ops = [(section, path, op) for section, path, op, _ in ops]
    for name, (_, _, op) in zip(names, ops, strict=True):
        if name in reserved or local_name(name) in reserved:
            raise fail((*where[name], "name"), f"block {kind!r}: {name!r} is a reserved value name"
                       f" ({', '.join(reserved)})")
        if op.op in REGISTRY and REGISTRY[op.op].has_parts and op.when is not None:
            raise fail((*where[name], "when"), f"block {kind!r}: a split cannot be optional"
                       " (its parts would have no value when it is off)")
    _check_modules(kind, names, [op for _, _, op in ops], where, fail)
    locals_seen: dict[str, str] = {}
    for name in names:
        other = locals_seen.setdefault(local_name(name), name)
        if other != name:
            raise fail(where[name], f"block {kind!r}: {other!r} and {name!r} name the same local"
                       f" variable {local_name(name)!r}")

    split_ops = {name for name, (_, _, op) in zip(names, ops, strict=True)
                 if op.op in REGISTRY and REGISTRY[op.op].has_parts}
    position = {name: k for k, name in enumerate(names)}
    inputs: list[tuple[str, ...]] = []
    previous: dict[str, str | None] = {"branch": BLOCK_INPUT, "post": RESIDUAL, "ops": BLOCK_INPUT}
    for k, (name, (section, _, op)) in enumerate(zip(names, ops, strict=True)):
        before = previous[section]
        if not op.input and before is None:
            raise fail(where[name], f"block {kind!r}: {name!r} follows a loop; name what it reads"
                       " with `input:` (NAME[*] for every copy of a loop's value)")
        refs = ([op.input] if isinstance(op.input, str) else list(op.input)) if op.input else [
            before]
        next_in_loop = k + 1 < len(names) and loop_of[names[k + 1]] == loop_of[name]
        previous[section] = None if loop_of[name] is not None and not next_in_loop else name
        for ref in refs:
            _check_ref(kind, name, section, ref, k, position, split_ops, names, where, fail,
                       loop_of)
        inputs.append(tuple(refs))
    # a loop's op may read an earlier copy of a later op of the same loop (`sp[i - 1]`)
    ordered = [tuple(r for r in refs if not (parse_ref(r)[1] is not None
                                              and loop_of.get(parse_ref(r)[0]) is not None
                                              and loop_of.get(parse_ref(r)[0]) == loop_of[n]))
               for n, refs in zip(names, inputs, strict=True)]
    _check_acyclic(kind, names, ordered, position, where, fail)

    branch_names = [n for n, (section, _, _) in zip(names, ops, strict=True)
                    if section != "post"]
    if output is not None and output not in branch_names:
        raise fail(("blocks", kind, "output"), f"block {kind!r}: output {output!r} is not a branch"
                   f" value{did_you_mean(output, branch_names)}")
    out = output or (branch_names[-1] if branch_names else BLOCK_INPUT)
    if projection_from and projection_from not in branch_names:
        raise fail(("blocks", kind, "projection_from"), f"no branch op named {projection_from!r}")
    used = {parse_ref(r)[0] for refs in inputs for r in refs} | {out, projection_from}
    if names[len(branch_names):]:
        used.add(names[-1])
    for name in names:
        if name not in used:
            raise fail(where[name], f"block {kind!r}: the value of {name!r} is computed and never"
                       " used (give another op `input:` naming it, or remove it)")
    return Wiring(tuple(inputs), out)


def _check_ref(kind: str, name: str, section: str, ref: str, k: int, position: dict[str, int],
               split_ops: set[str], names: Sequence[str], where: dict[str, tuple[Any, ...]],
               fail: Fail, loop_of: dict[str, Any]) -> None:
    base, part = parse_ref(ref)
    loc = (*where[name], "input")
    known = [BLOCK_INPUT, *names] if section != "post" else [BLOCK_INPUT, RESIDUAL, *names]
    if base == RESIDUAL and section == "branch":
        raise fail(loc, f"block {kind!r}: {name!r} reads {RESIDUAL!r}, the residual sum, which"
                   " only `post` ops can read")
    if base not in known:
        raise fail(loc, f"block {kind!r}: {name!r} reads {ref!r}, which is never defined"
                   f"{did_you_mean(base, known)}")
    looped = base in loop_of and loop_of[base] is not None
    same_loop = looped and loop_of[base] == loop_of.get(name)
    if part is not None and base not in split_ops and not looped:
        raise fail(loc, f"block {kind!r}: {name!r} reads {ref!r}, but {base!r} has no parts"
                   " (only a split's parts and a loop's copies are indexed)")
    if part is None and base in split_ops:
        raise fail(loc, f"block {kind!r}: {name!r} reads the split {base!r} whole; read its parts"
                   f" ({base}[0], {base}[1], ..., or {base}[*] for all of them)")
    if part is None and looped and not same_loop:
        raise fail(loc, f"block {kind!r}: {name!r} reads {base!r}, a value of a loop; read one"
                   f" copy ({base}[0]) or all of them ({base}[*])")
    if part == FAN_IN and same_loop:
        raise fail(loc, f"block {kind!r}: {name!r} reads every copy of {base!r} inside their"
                   " own loop; read the earlier copies by index")
    if base == name:
        raise fail(loc, f"block {kind!r}: {name!r} reads its own value (a cycle)")


def _check_acyclic(kind: str, names: Sequence[str], inputs: Sequence[tuple[str, ...]],
                   position: dict[str, int], where: dict[str, tuple[Any, ...]], fail: Fail) -> None:
    """Every value is defined before it is read; a read of a later value is a cycle when that
    value depends on the reader, otherwise an ordering mistake."""
    deps = {name: [parse_ref(r)[0] for r in refs if parse_ref(r)[0] in position]
            for name, refs in zip(names, inputs, strict=True)}
    for name, refs in zip(names, inputs, strict=True):
        for ref in refs:
            base = parse_ref(ref)[0]
            if base not in position or position[base] < position[name]:
                continue
            cycle = _path(base, name, deps)
            if cycle:
                loop = " -> ".join([name, *cycle])
                raise fail((*where[name], "input"), f"block {kind!r}: the values form a cycle"
                           f" ({loop})")
            raise fail((*where[name], "input"), f"block {kind!r}: {name!r} reads {ref!r} before"
                       f" it is defined; put {base!r} first")


def _path(start: str, goal: str, deps: dict[str, list[str]]) -> list[str]:
    """A dependency path from `start` back to `goal` (start, ..., goal), or [] if none."""
    stack, seen = [(start, [start])], {start}
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        for nxt in reversed(deps.get(node, [])):  # the first input is explored first
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return []


def _check_modules(kind: str, names: Sequence[str], ops: Sequence[Any],
                   where: dict[str, tuple[Any, ...]], fail: Fail) -> None:
    """Dotted names of modules nest like timm's (`conv1.paths.0.conv`): no module is also a
    container, and numbered containers count from 0 without gaps."""
    modules = [n for n, op in zip(names, ops, strict=True)
               if op.op not in REGISTRY or not REGISTRY[op.op].functional]
    leaves = set(modules)
    children: dict[str, list[str]] = {}
    for name in modules:
        parts = name.split(".")
        for depth in range(1, len(parts)):
            container = ".".join(parts[:depth])
            if container in leaves:
                raise fail((*where[name], "name"), f"block {kind!r}: {name!r} puts a module inside"
                           f" {container!r}, which is itself a module")
            kids = children.setdefault(container, [])
            if parts[depth] not in kids:
                kids.append(parts[depth])
    for container, kids in children.items():
        numbered = [k.isdigit() for k in kids]
        first = next(n for n in modules if n.startswith(container + "."))
        if any(numbered) and not all(numbered):
            raise fail((*where[first], "name"), f"block {kind!r}: the modules under {container!r}"
                       " are either all numbered or all named")
        if all(numbered) and sorted(int(k) for k in kids) != list(range(len(kids))):
            raise fail((*where[first], "name"), f"block {kind!r}: the modules under {container!r}"
                       f" must be numbered 0 to {len(kids) - 1}")
