"""Templates of ops, module calls, loops, blocks and modules: built once per compile (built-in
blocks once across compiles), with what every instance fixes folded in.

A part of the expander (ir/expand.py), which mixes the parts together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from ..language.expr import Expr, ExprError, Value
from ..language.spec import Loop, ModuleCall, validate_ops
from ..messages import did_you_mean
from ..ops import REGISTRY, SPEC_OPS
from ..ops.base import op_fields
from .cache import SHARED_TEMPLATES, remember
from .folding import specialise
from .layers import freeze
from .residual import SHAPE_CHANGES, is_slot, residual_form
from .templates import (
    POSITION_DEFAULTS,
    BlockTemplate,
    Item,
    LoopTemplate,
    ModuleTemplate,
    OpTemplate,
    Origin,
)
from .wiring import (
    BLOCK_INPUT,
    EXPLICIT_RESERVED,
    RESERVED,
    flatten,
    parse_ref,
    wire,
)


class Templates:
    def op_template(self, op: Any, name: str, layers: Mapping[str, Any] | None = None,
                    where: Origin = ()) -> OpTemplate:
        if isinstance(op, ModuleCall):
            return self.call_template(op, name, layers or {}, where)
        opdef = REGISTRY[op.op]
        sources = opdef.sources(op, self.ctx)
        fields = opdef.expression_fields()
        exprs = {k: Expr.parse(v) for k, v in sources.items() if k in fields}
        for key in opdef.size_lists:  # a list of sizes: one expression per item
            for i, item in enumerate(sources.get(key, ())):
                exprs[f"{key}[{i}]"] = Expr.parse(item)
        when = Expr.parse(op.when) if op.when is not None else None
        self.check_constants(where, {**exprs, **({"when": when} if when else {})})
        return OpTemplate(name, op.op, sources, exprs, when)

    def check_constants(self, where: Origin, exprs: Mapping[str, Expr]) -> None:
        """An expression with a constant part that cannot be evaluated (`log2(0)`, also inside
        `channels * log2(0)`) is wrong wherever it is used: say so at the field it is written
        in, not at a stage."""
        for key, e in exprs.items():
            err = e.constant_error()
            if err is None and e.constant:
                try:
                    e.evaluate({})
                except ExprError as found:
                    err = found
            if err is not None:
                field, _, index = key.partition("[")
                path = (*where, field, int(index[:-1])) if index else (*where, field)
                raise self.error(path, err.reason)

    def call_template(self, op: ModuleCall, name: str, layers: Mapping[str, Any],
                      where: Origin) -> OpTemplate:
        """A module call: the module's class, and the call's params as expressions."""
        if op.op not in self.modules:
            known = [*SPEC_OPS, *self.modules]
            raise self.error((*where, "op"), f"unknown op or module {op.op!r}"
                             f"{did_you_mean(op.op, known)}")
        module = self.modules[op.op]
        args = dict(op.model_extra or {})
        for key, value in args.items():
            if key not in module.params:
                params = ", ".join(module.params) or "none"
                raise self.error((*where, key), f"module {op.op!r} has no param {key!r} (params:"
                                 f" {params}){did_you_mean(key, list(module.params))}")
            if not isinstance(value, (bool, int, float, str)):
                raise self.error((*where, key), f"{key}: a module param is a number, a flag or"
                                 f" an expression, not {type(value).__name__}")
        fixed = {k: v for k, v in args.items() if k in module.fixed}
        for key, value in fixed.items():
            if type(value) is not type(module.params[key]):
                kind = "a word" if isinstance(module.params[key], str) else "a value"
                raise self.error((*where, key), f"{key}: module {op.op!r} fixes its class by this"
                                 f" param, so it takes {kind} like {module.params[key]!r}, not"
                                 f" {value!r}")
        t = self.module_template(op.op, layers, (*where, "op"), self.module_stack, fixed)
        args = {k: v for k, v in args.items() if k not in fixed}
        exprs = {}
        for key, value in args.items():
            try:
                exprs[key] = Expr.parse(value if isinstance(value, str) else repr(value))
            except ExprError as e:
                raise self.error((*where, key), str(e)) from None
        when = Expr.parse(op.when) if op.when is not None else None
        self.check_constants(where, {**exprs, **({"when": when} if when else {})})
        return OpTemplate(name, "module", args, exprs, when, module=t)

    def block_template(self, kind: str, block: Any, shortcut: str, layers: Mapping[str, Any],
                       origin: Origin) -> BlockTemplate:
        """The class for a block kind with a shortcut and layer choices, built once per compile."""
        fixed = self.fixed_switches(kind, block)
        layer_key = (freeze(layers), self.spec.defaults.drop_path_rate == 0, self.dilated,
                     freeze(fixed))
        key = (kind, shortcut, layer_key)
        if key in self.templates:
            return self.templates[key]
        shared = None
        if kind not in self.spec.blocks and shortcut not in self.spec.shortcuts \
                and not self.shadows_library:
            shared = ("builtin", kind, shortcut, self.ctx, layer_key)
        template = SHARED_TEMPLATES.get(shared) if shared else None
        if template is None:
            template = self.new_template(kind, block, shortcut, layers, shared, origin, fixed)
            if shared:
                remember(SHARED_TEMPLATES, shared, template)
        self.register_modules(template.branch + template.post)
        taken = {t.class_name for t in self.templates.values()}
        name, n = template.class_name, 1
        while name in taken:
            n += 1
            name = f"{template.class_name}{n}"
        if name != template.class_name:
            template = replace(template, class_name=name)
        self.templates[key] = template
        self.layout.classes[name] = template
        return template

    def fixed_switches(self, kind: str, block: Any) -> dict[str, Value]:
        """The block's flags that every stage using it sets alike: the class folds them away
        (a network without squeeze-excite gets no `se` argument and no SE code)."""
        found: dict[str, Value] | None = None
        for si, stage in enumerate(self.spec.stages):
            if stage.block != kind:
                continue
            flags = {k: v for k, v in self.stage_params(si, block).items()
                     if isinstance(v, bool)}  # a list of flags varies: it stays an argument
            found = flags if found is None else {k: v for k, v in found.items()
                                                 if flags.get(k) is v}
        return found or {}

    def new_template(self, kind: str, block: Any, shortcut: str, layers: Mapping[str, Any],
                     shared: tuple[Any, ...] | None, origin: Origin,
                     fixed: Mapping[str, Value] | None = None) -> BlockTemplate:
        chain = self.shortcuts.get(shortcut, [])  # none: no shortcut
        for i, op in enumerate(chain):
            if op.input is not None:
                raise self.error(("shortcuts", shortcut, i, "input"), "a shortcut is a chain of"
                                 " ops; 'input' is for ops inside a block's branch")
        written_as_ops = block.ops is not None
        if written_as_ops:  # the classic residual, written out, is templated as one
            block = residual_form(block) or block
        explicit = block.ops is not None  # the residual written out as ops of the block
        self.block_shortcut = shortcut
        sections = (("ops", block.ops),) if explicit else (("branch", block.branch),
                                                           ("post", block.post))
        reserved = EXPLICIT_RESERVED if explicit else RESERVED
        flat = [op for _, ops in sections for op, _, _ in flatten(ops)]
        scope = self.names_for(flat, set(reserved))
        for nm in scope:
            if scope.count(nm) > 1:
                raise self.error(("blocks", kind), f"op name {nm!r} is used twice in the block")
        wiring = wire(kind, sections, scope, block.output, block.projection_from,
                      lambda where, msg: self.error(where, msg), reserved=reserved)
        # what the layer choices fix for the whole class folds away (no `aa` switch in a class
        # that has no anti-aliasing layer); a name the block declares is its own, never these
        known: dict[str, Value] = {"aa": "anti_alias" in layers, "attn": "se" in layers}
        if self.spec.defaults.drop_path_rate == 0:
            known["drop_path_rate"] = 0.0
        if not self.dilated:
            known.update(dilation=1, first_dilation=1)
        declared = set(block.params) | set(block.vars)
        known = {k: v for k, v in known.items() if k not in declared}
        known.update(fixed or {})
        block_vars = []
        self.check_constants(("blocks", kind, "vars"),
                             {var: Expr.parse(text) for var, text in block.vars.items()})
        for var, text in block.vars.items():
            e = Expr.parse(text).partial(known)
            if e.constant:
                try:
                    known[var] = e.evaluate({})
                except ExprError as err:
                    raise self.error(("blocks", kind, "vars", var), err.reason) from None
            else:
                block_vars.append((var, e))

        # an op that no instance has (an unfilled slot, a `when` always false) is its input
        alias: dict[str, str] = {}
        first, *rest = sections
        n_branch = len(flatten(first[1]))
        branch = self.body_templates(first[1], scope[:n_branch], wiring.inputs[:n_branch],
                                     layers, known, alias, origin, ("blocks", kind, first[0]))
        post = self.body_templates(block.post, scope[n_branch:], wiring.inputs[n_branch:],
                                   layers, known, alias, origin, ("blocks", kind, "post")) \
            if rest else ()

        def resolve(ref: str) -> str:
            return _resolve_alias(ref, alias)

        shortcut_ops = chain if not explicit else []
        projection = self.body_templates(
            shortcut_ops, [f"downsample.{op.name or i}" for i, op in enumerate(shortcut_ops)],
            tuple((BLOCK_INPUT,) for _ in shortcut_ops), layers, known, alias, origin,
            ("shortcuts", shortcut))  # a chain
        norms = [t.name for t in branch if isinstance(t, OpTemplate) and t.module is None
                 and REGISTRY[t.kind].role == "norm" and t.when is None
                 and t.sources.get("affine", True)]  # a norm without weight cannot start at zero
        if block.last_norm is not None:
            norms = [self.named_norm(kind, block.last_norm, branch)]
        elif written_as_ops:
            norms = []
        name = block.class_name or "".join(p.capitalize() for p in kind.split("_")) + "Block"
        out_channels = Expr.parse(str(block.out_channels)).partial(known)
        self.check_constants(("blocks", kind), {"out_channels": out_channels})
        return BlockTemplate(
            class_name=name, kind=kind, shortcut=shortcut, params=dict(block.params),
            vars=tuple(block_vars),
            out_channels=out_channels, branch=branch,
            projection=projection, post=post,
            projection_from=resolve(block.projection_from) if block.projection_from else None,
            output=resolve(wiring.output),
            last_norm=norms[-1] if norms else None, shared_key=shared, residual=not explicit,
            position=tuple(n for n in POSITION_DEFAULTS if n not in declared and n in
                           _template_names(block, chain if not explicit or any(
                               is_slot(op) for op, _, _ in flatten(block.ops)) else [])))

    def named_norm(self, kind: str, name: str, branch: tuple[Item, ...]) -> str:
        """The module path of the norm `last_norm` names (inside a module call too)."""
        for item in branch:
            if not isinstance(item, OpTemplate):
                continue
            if item.name == name and item.module is None and REGISTRY[item.kind].role == "norm":
                return name
            if item.module is not None and name.startswith(item.name + "."):
                return name
        raise self.error(("blocks", kind, "last_norm"), f"block {kind!r}: last_norm {name!r} is"
                         " not a norm of the block")

    def body_templates(self, ops: list[Any], names: list[str], inputs: tuple[tuple[str, ...], ...],
                       layers: Mapping[str, Any], known: Mapping[str, Value],
                       alias: dict[str, str], origin: Origin, where: Origin) -> tuple[Item, ...]:
        """Templates of a body's ops (`names` and `inputs` for its ops with loops opened): layer
        choices applied, what `known` fixes folded, ops no instance has left out (their value
        is their first input, recorded in `alias`), module calls bound to their modules."""
        out: list[Item] = []
        k = 0
        for i, op in enumerate(ops):
            if isinstance(op, Loop):
                n = len(op.ops)
                body = self.body_templates(op.ops, names[k:k + n], inputs[k:k + n], layers,
                                           known, alias, origin, (*where, i, "ops"))
                k += n  # the spec model refuses a loop inside a loop
                count = Expr.parse(str(op.repeat)).partial(known)
                self.check_constants((*where, i), {"repeat": count})
                if body:
                    out.append(LoopTemplate(count, op.index, tuple(body)))  # type: ignore[arg-type]
                continue
            nm, refs = names[k], tuple(_resolve_alias(r, alias) for r in inputs[k])
            k += 1
            if is_slot(op):
                out += self.slot_templates(op, nm, refs, layers, known, alias, (*where, i))
                continue
            concrete = self.substitute(op, layers, (*where, i))
            t = None
            if concrete is not None:
                t = specialise(self.op_template(concrete, nm, layers, (*where, i)), known)
            if t is None:
                alias[nm] = refs[0]
            else:
                out.append(replace(t, inputs=refs))
        return tuple(out)

    def slot_templates(self, op: Any, name: str, refs: tuple[str, ...],
                       layers: Mapping[str, Any], known: Mapping[str, Value],
                       alias: dict[str, str], where: Origin) -> list[OpTemplate]:
        """A shortcut slot where it stands: the chosen shortcut's ops as `name.0`, `name.1`, ...
        (or their names), each used under the slot's condition; its value is the last one's,
        or its input where the block has no shortcut."""
        chain = self.shortcuts.get(self.block_shortcut, [])
        if not chain:
            alias[name] = refs[0]
            return []
        condition = op.when if op.when is not None else SHAPE_CHANGES
        names = [f"{name}.{step.name or j}" for j, step in enumerate(chain)]
        steps = [step.model_copy(update={"when": condition if step.when is None
                                         else f"({condition}) and ({step.when})"})
                 for step in chain]
        inputs = tuple((refs[0],) if j == 0 else (names[j - 1],) for j in range(len(chain)))
        out = list(self.body_templates(steps, names, inputs, layers, known, alias, where,
                                       ("shortcuts", self.block_shortcut)))
        alias[name] = _resolve_alias(names[-1], alias)
        return out

    def register_modules(self, items: tuple[Item, ...]) -> None:
        """Put the module classes a template calls (inner ones first) into the layout: a
        built-in block's template may come from an earlier compile."""
        for item in items:
            for op in (item.body if isinstance(item, LoopTemplate) else (item,)):
                if op.module is not None and op.module.class_name not in self.layout.modules:
                    self.register_modules(op.module.body)
                    self.layout.modules[op.module.class_name] = op.module

    def module_template(self, kind: str, layers: Mapping[str, Any], where: Origin,
                        stack: tuple[str, ...] = (),
                        fixed: Mapping[str, Any] | None = None) -> ModuleTemplate:
        """The class of module `kind` under these layer choices and values of the params that
        fix it, built once per compile."""
        module = self.modules[kind]
        fixed = {k: v for k, v in (fixed or {}).items() if v != module.params[k]}
        key = (kind, freeze(layers), freeze(fixed))
        found = self.module_templates.get(key)
        if found is not None:
            return found
        if kind in stack or len(stack) > 16:
            loop = " -> ".join([*stack, kind])
            raise self.error(where, f"module {kind!r} contains itself ({loop})")
        owner: Origin = ("modules", kind)
        ops = self.bound_ops(kind, module, fixed, where) if fixed else module.ops
        flat = [op for op, _, _ in flatten(ops)]
        scope = self.names_for(flat, set(EXPLICIT_RESERVED))
        for nm in scope:
            if scope.count(nm) > 1:
                raise self.error(owner, f"op name {nm!r} is used twice in module {kind!r}")
        wiring = wire(kind, (("ops", ops),), scope, module.output, None,
                      lambda at, msg: self.error(at, msg), owner, EXPLICIT_RESERVED)
        alias: dict[str, str] = {}
        self.module_stack = (*stack, kind)
        try:
            body = self.body_templates(ops, scope, wiring.inputs, layers, {}, alias,
                                       owner, (*owner, "ops"))
        finally:
            self.module_stack = stack
        variables = tuple((var, Expr.parse(text)) for var, text in module.vars.items())
        self.check_constants((*owner, "vars"), dict(variables))
        name = module.class_name or "".join(p.capitalize() for p in kind.split("_"))
        taken = {t.class_name for t in self.module_templates.values()} | set(self.layout.classes)
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}{n}"
        params = {k: v for k, v in module.params.items() if k not in module.fixed}
        checks = tuple((Expr.parse(c.when), c.error) for c in module.checks)
        t = ModuleTemplate(name, kind, params, variables, body,
                           _resolve_alias(wiring.output, alias), checks, module.doc)
        self.module_templates[key] = t  # the layout gets it once a template keeps the call
        return t

    def bound_ops(self, kind: str, module: Any, fixed: Mapping[str, Any],
                  where: Origin) -> list[Any]:
        """The module's ops validated again with the call's values of its fixed params; an
        error names the call's key (`where` is the call's `op`) and the field it reaches."""
        try:
            return validate_ops(module.bound_ops(dict(fixed)))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"][1:] if not isinstance(p, int))
            msg = err["msg"].replace("Input should be", "must be").removeprefix("Value error, ")
            key = next(iter(fixed)) if len(fixed) == 1 else None
            given = ", ".join(f"{k}: {v}" for k, v in fixed.items())
            at = (*where[:-1], key) if key else where
            raise self.error(at, f"{given} does not fit module {kind!r}: its {loc} {msg}"
                             ) from None


def _resolve_alias(ref: str, alias: Mapping[str, str]) -> str:
    """`ref` with a left-out op replaced by the value it stands for (its first input)."""
    base, part = parse_ref(ref)
    target = alias.get(base, base)
    return target if part is None else f"{target}[{part}]"


def _template_names(block: Any, shortcut: list[Any]) -> set[str]:
    """Every name a block's expressions read (so position values it uses become arguments)."""
    names: set[str] = set(Expr.parse(str(block.out_channels)).names)
    for e in block.vars.values():
        names |= Expr.parse(e).names
    ops = block.ops if block.ops is not None else [*block.branch, *block.post]
    for op in [o for o, _, _ in flatten(ops)] + list(shortcut):
        for key, value in op_fields(op, ("op", "name", "input")).items():
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, str) or key == "fn":
                    continue
                try:
                    names |= Expr.parse(item).names
                except ExprError:
                    continue
    return names
