"""The constructor and forward lines of a body of ops: a block's branch and post, or a module's
ops. Ops become modules or torch expressions from the op table; module calls become instances of
the module's class; loops become `nn.ModuleList`s built with a comprehension and a `for` loop in
forward that collects each copy's value in a list.

A value read only by the next op stays in `out` (so a chain reads like torchvision's code); any
other gets a local named after it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..ir.templates import Item, LoopTemplate, ModuleTemplate, OpTemplate, flat_ops
from ..ir.wiring import BLOCK_INPUT, FAN_IN, RESIDUAL, local_name, parse_ref
from ..language.expr import Expr
from ..ops import REGISTRY
from .channel_text import Channels, rule_channels, rule_part_channels, simplify
from .code import INDENT, docstring, group_modules
from .pyformat import WIDTH


def code_of(op: OpTemplate) -> dict[str, Any]:
    """An op template's attributes as code: sizes as expression text, the rest as values."""
    return {k: (op.exprs[k].source if k in op.exprs else v) for k, v in op.sources.items()}


def _operand(text: str) -> str:
    return text if text.isidentifier() or text.isdigit() else f"({text})"


# ---- the body emitter --------------------------------------------------------------------------

class Body:
    """Emits one body. `sections` are the body's items in order (a block: branch, then post
    with the residual add between them); `reads_after` are values read after the body (the
    block's output meeting the shortcut, its projection source, the module's output)."""

    def __init__(self, items: Sequence[Item], reads_after: Sequence[str],
                 in_channels: str = "in_channels", keep: str | None = None,
                 residual: tuple[str, int] | None = None):
        self.items = list(items)
        self.ops = flat_ops(tuple(items))
        self.loop_of: dict[str, LoopTemplate] = {}
        for item in items:
            if isinstance(item, LoopTemplate):
                for op in item.body:
                    self.loop_of[op.name] = item
        self.readers: dict[str, list[int]] = {}
        for k, op in enumerate(self.ops):
            for ref in op.inputs:
                self.readers.setdefault(parse_ref(ref)[0], []).append(k)
        if residual is not None:  # the value meeting the shortcut, read between branch and post
            self.readers.setdefault(parse_ref(residual[0])[0], []).append(residual[1])
        for ref in reads_after:
            self.readers.setdefault(parse_ref(ref)[0], []).append(len(self.ops))
        self.index = {op.name: k for k, op in enumerate(self.ops)}
        self.holder: dict[str, str] = {BLOCK_INPUT: "x", RESIDUAL: "out"}
        self.channels: dict[str, str] = {BLOCK_INPUT: in_channels, RESIDUAL: "out_channels"}
        # "(a if c else b)" -> (a, c): the channels of an optional op's output, for an op with c too
        self.conditional: dict[str, tuple[str, str]] = {}
        self.fresh: dict[str, bool] = {BLOCK_INPUT: False, RESIDUAL: True}
        self.keep = keep  # a value stored apart before it is overwritten (pre-activation)
        self.chains = self._chain_groups()
        # a chain whose members share one condition is built, and called, under it as a whole
        self.group_conditions: dict[str, str] = {}
        for top, members in self.chains.items():
            whens = {op.when.source if op.when is not None else None for op in members}
            if len(whens) == 1 and None not in whens:
                self.group_conditions[top] = whens.pop()
        self.init: list[str] = []
        self.forward: list[str] = []
        self.groups: list[tuple[str, list[str]]] = []

    def _chain_groups(self) -> dict[str, list[OpTemplate]]:
        """Dotted groups (`downsample.0`, `downsample.1`) that are a chain: consecutive modules,
        each reading only the one before, whose values nothing else reads. Such a group is one
        nn.Sequential called once, as torchvision and timm call their downsample."""
        by_top: dict[str, list[int]] = {}
        for k, op in enumerate(self.ops):
            if "." in op.name and op.name not in self.loop_of:
                by_top.setdefault(op.name.partition(".")[0], []).append(k)
        out = {}
        for top, ks in by_top.items():
            members = [self.ops[k] for k in ks]
            ok = len(ks) > 1 and ks == list(range(ks[0], ks[0] + len(ks))) and all(
                op.name.count(".") == 1 and op.module is None
                and not REGISTRY[op.kind].functional and op.name != self.keep
                for op in members) and len(members[0].inputs) == 1
            ok = ok and not any(op.name.partition(".")[0] == top for op in self.ops
                                if op not in members)
            for prev, op in zip(members, members[1:], strict=False):
                ok = ok and op.inputs == (prev.name,) and \
                    self.readers.get(prev.name, []) == [self.index[op.name]]
            if ok:
                out[top] = members
        return out

    def attribute(self, name: str) -> str:
        """The attribute that keeps constructor value `name` for forward: its own name, unless
        a module of the class has it."""
        modules = {op.name.partition(".")[0] for op in self.ops}
        return f"num_{name}" if name in modules else name

    # -- values -----------------------------------------------------------------------------------
    def expr(self, ref: str, inside: LoopTemplate | None = None) -> str:
        base, part = parse_ref(ref)
        holder = self.holder[base]
        if part is None:
            return holder
        if part == FAN_IN:
            return f"*{holder}"
        if isinstance(part, str):  # an index expression: constructor values become attributes
            names = Expr.parse(part).names - {getattr(inside, "index", None)}
            for n in sorted(names):
                if f"self.{self.attribute(n)} = {n}" not in self.init:
                    self.init.append(f"self.{self.attribute(n)} = {n}")
            part = simplify(part, {n: f"self.{self.attribute(n)}" for n in names})
        return f"{holder}[{part}]"

    def channels_of(self, ref: str) -> str:
        """The channels of the value `ref` names; for every copy or part (`name[*]`), one
        copy's."""
        base, part = parse_ref(ref)
        if part is None or base in self.loop_of:
            return self.channels[base]
        op = self.ops[self.index[base]]
        return rule_part_channels(REGISTRY[op.kind], code_of(op), self.channels[base],
                                  0 if part == FAN_IN else part)

    def channel_term(self, ref: str) -> Channels:
        """The channels of `ref` for an op's channel rule: every copy or part (`name[*]`) is
        one copy's channels, adding up to all of them together."""
        one = self.channels_of(ref)
        base, part = parse_ref(ref)
        if part != FAN_IN:
            return Channels(one)
        if base in self.loop_of:
            count = self.loop_of[base].count.source
            return Channels(one, simplify(f"{_operand(count)} * {_operand(one)}"))
        return Channels(one, self.channels[base])  # every part of a split: the whole

    def place(self, op: OpTemplate) -> str:
        """The variable that holds `op`'s value."""
        if op.name in self.loop_of:
            return f"{local_name(op.name)}_{self.loop_of[op.name].index}"
        k = self.index[op.name]
        readers = self.readers.get(op.name, [])
        chained = readers == [k + 1] and op.name != self.keep and (
            k + 1 == len(self.ops) or self.ops[k + 1].name not in self.loop_of)
        return "out" if chained else local_name(op.name)

    # -- items ------------------------------------------------------------------------------------
    def emit(self, items: Sequence[Item]) -> None:
        for item in items:
            if isinstance(item, LoopTemplate):
                self.loop(item)
            else:
                self.op(item, self.init, self.forward, None)

    def op(self, op: OpTemplate, init: list[str], forward: list[str],
           loop: LoopTemplate | None) -> None:
        first = op.inputs[0]
        first_base, first_part = parse_ref(first)
        in_ch = self.channels_of(first)
        given = self.conditional.get(in_ch)
        if op.when is not None and given and given[1] == op.when.source:
            in_ch = given[0]  # built only where its input's op with the same condition is
        sole = len(self.readers.get(first_base, [])) == 1 and first_part is None
        may_inplace = self.fresh.get(first_base, False) and sole and len(op.inputs) == 1 \
            and loop is None
        target = "out" if op.name == self.keep else self.place(op)
        args = [self.expr(r, loop) for r in op.inputs]
        if op.when is not None and target in args[1:]:  # `out = a; out = out + out` is not a + b
            target = local_name(op.name)
        path = _module_path(op.name) if loop is None else f"self.{local_name(op.name)}[{loop.index}]"
        in_place = False
        if op.module is not None:
            call = f"{path}({args[0]})"
            self.module(op, in_ch, init, loop)
            out_ch = module_out_channels(op, in_ch)
        else:
            opdef = REGISTRY[op.kind]
            in_place = may_inplace and opdef.inplace_ok
            # an earlier copy of a later op of the loop (`sp[i - 1]`) has the first input's
            # channels (the op's shape rule checks them)
            out_ch = rule_channels(opdef, code_of(op), [
                self.channel_term(r) if parse_ref(r)[0] in self.channels else in_ch
                for r in op.inputs])
            if opdef.functional:
                code = self.functional_code(op, init, loop)
                call = opdef.torch_expr("", args, code)
            else:
                ctor = module_expr(op, in_ch, inplace=may_inplace)
                self.place_module(op, ctor, init, loop)
                call = opdef.torch_call(path, args)
        top = op.name.partition(".")[0]
        chain = self.chains.get(top) if loop is None else None
        if chain is not None and op is not chain[-1]:
            target = args[0]  # the group is called once, at its last member
        elif chain is not None:
            call = f"self.{top}({args[0]})"
            if top in self.group_conditions:
                call = f"{args[0]} if self.{top} is None else {call}"
            forward.append(f"{target} = {call}")
        elif op.when is None:
            forward.append(f"{target} = {call}")
        else:
            flag = self.flag(op, init, loop)
            if target != args[0]:
                forward.append(f"{target} = {args[0]}")
            if op.module is None and REGISTRY[op.kind].functional:
                call = REGISTRY[op.kind].torch_expr("", [target, *args[1:]], self.functional_code(
                    op, [], loop))
            else:
                call = call.replace(f"({args[0]}", f"({target}", 1) if args[0] != target else call
            forward += [f"if {flag}:", f"{INDENT}{target} = {call}"]
        self.holder[op.name] = target
        self.channels[op.name] = out_ch if op.when is None or out_ch == in_ch else \
            f"({out_ch} if {op.when.source} else {in_ch})"
        if self.channels[op.name] != out_ch:
            self.conditional[self.channels[op.name]] = (out_ch, op.when.source)
        self.fresh[op.name] = (self.fresh.get(first_base, False) if op.when is not None else True) \
            and not in_place and not (op.module is None and REGISTRY[op.kind].has_parts)
        if op.name == self.keep:
            forward.append("preact = out")
            self.holder[op.name], self.fresh[op.name] = "preact", False

    def flag(self, op: OpTemplate, init: list[str], loop: LoopTemplate | None) -> str:
        """How forward tests an optional op: a module left None, or a flag set at construction
        (a list of flags in a loop)."""
        assert op.when is not None
        if op.module is not None or not REGISTRY[op.kind].functional:
            path = _module_path(op.name) if loop is None else \
                f"self.{local_name(op.name)}[{loop.index}]"
            return f"{path} is not None"
        flag = f"self.{local_name(op.name)}_on"
        if loop is None:
            init.append(f"{flag} = {op.when.source}")
            return flag
        init.append(f"{flag} = [{op.when.source} for {loop.index} in range({loop.count.source})]")
        return f"{flag}[{loop.index}]"

    def module(self, op: OpTemplate, in_ch: str, init: list[str],
               loop: LoopTemplate | None) -> None:
        t = op.module
        assert t is not None
        args = [in_ch] + [f"{k}={code}" for k, code in call_args(op).items()]
        self.place_module(op, f"{t.class_name}({', '.join(args)})", init, loop)

    def place_module(self, op: OpTemplate, ctor: str | None, init: list[str],
                     loop: LoopTemplate | None) -> None:
        assert ctor is not None
        if loop is not None:
            if op.when is not None:
                ctor = f"{ctor} if {op.when.source} else None"
            attr = f"self.{local_name(op.name)}"
            index = loop.index if re.search(rf"\b{loop.index}\b", ctor) else "_"
            line = f"{attr} = nn.ModuleList([{ctor} for {index} in range({loop.count.source})])"
            if len(line) + 8 <= WIDTH or len(line) - len(attr) - 15 <= WIDTH - 12:
                init.append(line)  # fits on one line, or on one inside the call's parentheses
            else:
                init += [f"{attr} = nn.ModuleList()", f"for {index} in range({loop.count.source}):",
                         f"{INDENT}{attr}.append({ctor})"]
            return
        path = _module_path(op.name)
        if "." in op.name:
            top = op.name.partition(".")[0]
            if not any(m.partition(".")[0] == top for m, _ in self.groups):
                init.append(f"@group:{top}")  # the container goes where it first appears
            if op.when is None or top in self.group_conditions:
                member = ctor  # the whole group is built under its members' one condition
            elif top in self.chains:
                member = f"{ctor} if {op.when.source} else nn.Identity()"  # timm's way
            else:
                member = f"{ctor} if {op.when.source} else None"
            self.groups.append((op.name, [member]))
        elif op.when is None:
            init.append(f"{path} = {ctor}")
        else:
            init += [f"if {op.when.source}:", f"{INDENT}{path} = {ctor}", "else:",
                     f"{INDENT}{path} = None"]

    def functional_code(self, op: OpTemplate, init: list[str],
                        loop: LoopTemplate | None) -> dict[str, Any]:
        """A functional op's attributes as code for `forward`: constants inline, anything the
        constructor computes kept as an attribute (`self.xr_parts = radix`)."""
        code = code_of(op)
        for key, e in op.exprs.items():
            if e.constant:
                continue
            base, bracket, index = key.partition("[")
            attr = f"self.{local_name(op.name)}_{base}{'_' + index[:-1] if bracket else ''}"
            if e.source.isidentifier() and e.source != getattr(loop, "index", None):
                # a constructor argument, kept once (self.radix; self.num_paths beside a
                # module named paths)
                attr = f"self.{self.attribute(e.source)}"
                if f"{attr} = {e.source}" not in init:
                    init.append(f"{attr} = {e.source}")
            elif loop is not None and loop.index in e.names:
                init.append(f"{attr} = [{e.source} for {loop.index} in range("
                            f"{loop.count.source})]")
                attr = f"{attr}[{loop.index}]"
            else:
                init.append(f"{attr} = {e.source}")
            if bracket:
                code[base] = list(code[base])
                code[base][int(index[:-1])] = attr
            else:
                code[key] = attr
        return code

    def loop(self, loop: LoopTemplate) -> None:
        """A loop: module ops as ModuleLists, then a `for` loop appending each copy's value."""
        body: list[str] = []
        modules = [op for op in loop.body if op.module is not None
                   or not REGISTRY[op.kind].functional]
        for op in loop.body:  # an earlier copy (`sp[i - 1]`) is read from the list
            self.holder[op.name] = local_name(op.name)
        for op in loop.body:
            self.op(op, self.init, body, loop)
        kept = [op for op in loop.body if any(
            self.loop_of.get(op.name) is not loop or parse_ref(r)[1] is not None
            for k in self.readers.get(op.name, []) if k < len(self.ops)
            for r in self.ops[k].inputs if parse_ref(r)[0] == op.name)
            or len(self.ops) in self.readers.get(op.name, [])]
        lists = [local_name(op.name) for op in kept]
        if modules:
            count = f"len(self.{local_name(modules[0].name)})"
        elif loop.count.source.isidentifier():
            count = f"self.{self.attribute(loop.count.source)}"
            if f"{count} = {loop.count.source}" not in self.init:
                self.init.append(f"{count} = {loop.count.source}")
        else:
            count = f"self.{local_name(loop.body[0].name)}_repeat"
            self.init.append(f"{count} = {loop.count.source}")
        self.forward += [f"{name} = []" for name in lists]
        self.forward.append(f"for {loop.index} in range({count}):")
        self.forward += [INDENT + line for line in body]
        self.forward += [f"{INDENT}{local_name(op.name)}.append({self.holder[op.name]})"
                         for op in kept]
        for op in loop.body:  # after the loop, a name means the list of copies
            self.holder[op.name] = local_name(op.name)


def _module_path(name: str) -> str:
    """`conv1.paths.0.conv` -> `self.conv1.paths[0].conv`."""
    out = "self"
    for part in name.split("."):
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def module_expr(op: OpTemplate, in_ch: str, inplace: bool) -> str | None:
    """The constructor for `op`; `nn.Identity()` where its attributes make it a no-op."""
    opdef = REGISTRY[op.kind]
    code = code_of(op)
    module = opdef.torch_module(code, in_ch, inplace and opdef.inplace_ok)
    condition = opdef.identity_condition(code)
    if condition == "True":
        return "nn.Identity()"
    if condition and module is not None:
        return f"nn.Identity() if {condition} else {module}"
    return module


def call_args(op: OpTemplate) -> dict[str, str]:
    """A module call's arguments as code, those equal to the module's defaults left out."""
    t = op.module
    assert t is not None
    out = {}
    for key in module_signature(t):
        if key not in op.exprs:
            continue
        e = op.exprs[key]
        if e.constant and e.evaluate({}) == t.params[key] and type(e.evaluate({})) is type(
                t.params[key]):
            continue
        out[key] = e.source
    return out


def module_out_channels(op: OpTemplate, in_ch: str) -> str:
    """A module call's output channels in the caller's terms."""
    t = op.module
    assert t is not None
    inner = module_channels(t)
    mapping = {"in_channels": in_ch}
    mapping.update({k: (op.exprs[k].source if k in op.exprs else repr(v))
                    for k, v in t.params.items()})
    for var, e in t.vars:
        mapping[var] = simplify(e.source, mapping)
    return simplify(inner, mapping)


_EMITTED: dict[int, tuple[ModuleTemplate, Body]] = {}


def module_body(t: ModuleTemplate) -> Body:
    """The emitted body of a module class (kept: its channels are asked for at each call)."""
    found = _EMITTED.get(id(t))
    if found is None or found[0] is not t:
        if len(_EMITTED) > 1000:
            _EMITTED.clear()
        body = Body(t.body, [t.output])
        body.emit(t.body)
        found = _EMITTED[id(t)] = (t, body)
    return found[1]


def module_channels(t: ModuleTemplate) -> str:
    """The module's output channels as text in its own terms (in_channels, params, vars)."""
    return module_body(t).channels_of(t.output)


def _names(op: OpTemplate) -> set[str]:
    names = {n for e in op.exprs.values() for n in e.names}
    return names | (set(op.when.names) if op.when else set())


def _module_used(t: ModuleTemplate) -> set[str]:
    used: set[str] = set()
    for item in t.body:
        if isinstance(item, LoopTemplate):
            used |= item.count.names
            for op in item.body:
                used |= _names(op)
        else:
            used |= _names(item)
    for name, e in reversed(t.vars):
        if name in used:
            used |= e.names
    return used


def module_signature(t: ModuleTemplate) -> list[str]:
    """The params the module's class takes: those its code reads, in declared order."""
    used = _module_used(t)
    return [k for k in t.params if k in used]


def module_class(t: ModuleTemplate) -> list[str]:
    """The lines of a module's class (wrapped by the caller)."""
    body = module_body(t)
    used = _module_used(t)
    params = module_signature(t)
    signature = ["self", "in_channels: int"]
    if params:
        signature += ["*", *(f"{k}: {type(t.params[k]).__name__} = {t.params[k]!r}"
                             for k in params)]
    groups = group_modules(body.groups, body.group_conditions)
    init = ["super().__init__()"]
    init += [f"{k} = {e.source}" for k, e in t.vars if k in used]
    init += [line for item in body.init
             for line in (groups[item[7:]] if item.startswith("@group:") else [item])]
    forward = [*body.forward, f"return {body.holder[parse_ref(t.output)[0]]}"]
    return [f"class {t.class_name}(nn.Module):",
            *docstring(t.doc or f"The {t.kind!r} module.", INDENT), "",
            f"{INDENT}def __init__({', '.join(signature)}) -> None:",
            *(f"{INDENT * 2}{line}" for line in init), "",
            f"{INDENT}def forward(self, x: torch.Tensor) -> torch.Tensor:",
            *(f"{INDENT * 2}{line}" for line in forward)]
