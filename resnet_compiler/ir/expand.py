"""Expansion of a validated spec into the graph IR (a networkx DiGraph, one node per op) and the
code layout beside it.

Node ids are the module paths of the generated PyTorch code (`layer1.0.conv1`), so node ids,
state_dict keys and ONNX initializer names line up. Each node carries `op`, its concrete
attributes, `shape` (without batch), `tensors`, `params`, `macs` and `acts`, all from the op
table. Blocks that share a class and arguments expand to the same nodes under another prefix, so
each distinct block is evaluated once per compile (resnet152's 36 identical layer3 blocks: once).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from ..errors import SpecError
from ..language.expr import Expr, ExprError, Value
from ..language.library import builtin_library
from ..language.load import Document
from ..language.preprocessing import Preprocessing
from ..language.spec import PRE_LOGITS, Loop, ModuleCall, validate_ops
from ..messages import did_you_mean, format_bytes, format_shape
from ..ops import REGISTRY, SPEC_OPS, Context, ShapeError
from ..ops.base import op_fields
from ..version import __version__
from .folding import fold_unset_module_params, specialise
from .geometry import stage_geometry
from .graph import IRGraph
from .instances import BlockBody, Node, Port, annotate
from .layers import LAYER_SETTINGS, freeze, layer_mapping
from .residual import NO_SHORTCUT, SHAPE_CHANGES, is_slot, residual_form
from .templates import (
    POSITION_DEFAULTS,
    BlockInstance,
    BlockTemplate,
    Item,
    Layout,
    LoopTemplate,
    ModuleTemplate,
    OpTemplate,
    StageLayout,
    TopOp,
)
from .wiring import (
    BLOCK_INPUT,
    EXPLICIT_RESERVED,
    RESERVED,
    RESIDUAL,
    flatten,
    parse_ref,
    wire,
)

# Expansion is linear in the number of blocks; the deepest published ResNets have a few hundred.
# The limit keeps a short spec with `depth: 1000000000` from hanging the compiler.
MAX_BLOCKS = 5_000
DEFAULT_MAX_PARAMS = 4_000_000_000
Origin = tuple[str | int, ...]


# Built-in blocks are the same in every compile: their templates, and the nodes of each distinct
# block instance, are kept across compiles (design-space sweeps compile thousands of specs).
_SHARED_TEMPLATES: dict[tuple[Any, ...], BlockTemplate] = {}
_SHARED_EXPANSIONS: dict[tuple[Any, ...], tuple[list[Node], str]] = {}
MAX_SHARED = 20_000


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= MAX_SHARED:
        cache.clear()
    cache[key] = value


class ParamLimitError(SpecError):
    """The network has more parameters than the caller allows."""


class _Expander:
    def __init__(self, spec: Any, doc: Document | None, max_params: int):
        self.spec = spec
        self.doc = doc or Document(None, "<spec>")
        self.max_params = max_params
        self.ctx = Context(conv_bias=spec.defaults.conv_bias)
        library = builtin_library()
        # a spec's own blocks, shortcuts and modules shadow built-ins of the same name (one
        # added to the library later included), as its params shadow the language's names
        self.shadows_library = any(set(getattr(spec, kind)) & set(getattr(library, kind))
                                   for kind in ("blocks", "shortcuts", "modules"))
        self.blocks = {**library.blocks, **spec.blocks}
        self.modules = {**library.modules, **spec.modules}
        self.module_templates: dict[tuple[Any, ...], ModuleTemplate] = {}
        self.module_stack: tuple[str, ...] = ()
        self.shortcuts = {**library.shortcuts, **spec.shortcuts}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[tuple[str, str, dict[str, Any]]] = []
        self.layout = Layout(zero_init_last_norm=spec.defaults.zero_init_last_bn)
        self.templates: dict[tuple[str, str], BlockTemplate] = {}
        self.expansions: dict[tuple[Any, ...], tuple[list[Node], str]] = {}
        self.top_names: set[str] = {"input"}
        self.choice_origin: dict[Any, Origin] = {}
        self.top_layers = self.layer_choices(None, ())
        # no dilation anywhere: classes need no dilation arguments
        self.dilated = spec.output_stride is not None or any(
            (st.dilation or 1) > 1 for st in spec.stages)
        self.open_group: str | None = None
        self.block_shortcut = "conv_bn"  # the shortcut of the block being templated
        self.children: dict[str, list[str]] = {}
        self._stem_out = "input"
        self.outputs: dict[str, str] = {}

    def error(self, path: Iterable[str | int], message: str) -> SpecError:
        return self.doc.error(tuple(path), message)

    # ---- ops ---------------------------------------------------------------------------------
    def substitute(self, op: Any, layers: Mapping[str, Any], where: Origin) -> Any | None:
        """`op` with the layer choices applied (bn -> defaults.norm, relu -> defaults.act, conv ->
        defaults.conv, the anti_alias slot -> defaults.aa); None for an unfilled slot."""
        choice = layers.get(op.op)
        if choice is None:
            return None if op.op == "anti_alias" else op
        if choice["op"] in self.modules:  # an attention module (cbam) where se would be
            return ModuleCall.model_validate(
                {**{k: getattr(op, k) for k in ("name", "when") if k in op.model_fields_set},
                 **choice})
        model = SPEC_OPS[choice["op"]].model
        # the replaced op's own settings carry over to another kind (a conv's sizes to std_conv);
        # a choice of the same kind (se -> {op: se, ratio: 0.25}) is the whole op
        keep = ("name", "when") if choice["op"] == op.op else tuple(model.model_fields)
        data = {k: getattr(op, k) for k in op.model_fields_set
                if k != "op" and k in keep and k not in choice}
        data.update(choice)
        try:
            return model.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].replace("Input should be", "must be").removeprefix("Value error, ")
            where = self.choice_origin.get((op.op, freeze(choice)), where)
            raise self.error(where, f"the {choice['op']} that replaces {op.op}: "
                             f"{loc + ': ' if loc else ''}{msg}") from None

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

    def evaluate(self, t: OpTemplate, env: Mapping[str, Value], fail: Any) -> dict[str, Any]:
        """Sizes evaluated and checked; other attributes as they are."""
        opdef = REGISTRY[t.kind]
        sizes = opdef.sizes
        values = dict(t.sources)
        for key, e in t.exprs.items():
            try:
                v = e.evaluate(env)
            except ExprError as err:
                raise fail(key, str(err)) from None
            if key in opdef.reals:
                lo, hi = opdef.reals[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v < hi:
                    raise fail(key, f"{e.source} = {v!r}; must be a number from {lo} to below {hi}")
                values[key] = v
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise fail(key, f"{e.source} = {v!r}; sizes must be whole numbers")
            minimum = sizes[key] if key in sizes else opdef.size_lists[key.partition("[")[0]]
            if v < minimum:
                raise fail(key, f"{e.source} = {v}; must be at least {minimum}")
            values[key] = v
        return values

    def make_node(self, t: OpTemplate, values: Mapping[str, Any], shapes: list[tuple[int, ...]],
                  label: str, origin: Origin, refs: list[str] | None = None
                  ) -> dict[str, Any] | None:
        """Node data for an op on inputs of `shapes` (read from values `refs`, named in errors),
        or None when the op is a no-op."""
        opdef = REGISTRY[t.kind]
        try:
            attrs = opdef.resolve(values, shapes)
            if opdef.is_identity(attrs):
                return None
            shape = opdef.shape(attrs, shapes)
        except ShapeError as e:
            reads = ""
            if refs and len(refs) > 1:
                reads = " (inputs: " + ", ".join(
                    f"{r} {format_shape(s)}" for r, s in zip(refs, shapes, strict=True)) + ")"
            raise self.error(origin, f"{label}: {e}{reads}") from None
        return annotate(opdef, {"op": t.kind, **attrs}, shapes, shape)

    def add(self, node_id: str, data: dict[str, Any], inputs: Iterable[str],
            roles: Iterable[str] = ("input",)) -> str:
        self.nodes[node_id] = data
        for index, (src, role) in enumerate(zip(inputs, roles, strict=False)):
            self.edges.append((src, node_id, {"role": role, "index": index}))
        return node_id

    def shape_of(self, node_id: str) -> tuple[int, ...]:
        return self.nodes[node_id]["shape"]

    # ---- naming ------------------------------------------------------------------------------
    @staticmethod
    def names_for(ops: list[Any], taken: set[str]) -> list[str]:
        """Explicit names, or `<op><k>` for unnamed ops, skipping names already in use."""
        explicit = {op.name for op in ops if op.name}
        explicit |= {name.partition(".")[0] for name in explicit}  # `group.index` claims `group`
        used = set(taken) | explicit
        counters: dict[str, int] = {}
        names = []
        for op in ops:
            if op.name:
                names.append(op.name)
                continue
            k = counters.get(op.op, 0)
            while True:
                k += 1
                candidate = f"{op.op}{k}"
                if candidate not in used:
                    break
            counters[op.op] = k
            used.add(candidate)
            names.append(candidate)
        return names

    def place(self, path: str, origin: Origin) -> str:
        """Claim a module path: a plain name once; a dotted path's containers only by consecutive
        modules, each container's children unique, indices from 0 in order."""
        parts = path.split(".")
        if len(parts) > 1 and parts[0] != self.open_group and parts[0] in self.children:
            raise self.error(origin, f"{path!r}: the modules under {parts[0]!r} must be"
                             " consecutive")
        if len(parts) == 1 or parts[0] != self.open_group:
            self.claim_top(parts[0], origin)
        self.open_group = parts[0] if len(parts) > 1 else None
        for depth in range(1, len(parts)):
            container, key = ".".join(parts[:depth]), parts[depth]
            kids = self.children.setdefault(container, [])
            if kids and kids[-1] == key and depth < len(parts) - 1:
                continue
            if key in kids:
                raise self.error(origin, f"{path!r}: the modules under {container!r} must be"
                                 " consecutive, each name once")
            if kids and kids[0].isdigit() != key.isdigit():
                raise self.error(origin, f"{path!r}: the modules under {container!r} are either"
                                 " all numbered or all named")
            if key.isdigit() and int(key) != len(kids):
                raise self.error(origin, f"{path!r}: the modules under {container!r} must be "
                                 f"numbered from 0 in order ({container}.{len(kids)} expected)")
            kids.append(key)
        return path

    def claim_top(self, name: str, origin: Origin) -> str:
        if name in self.top_names:
            raise self.error(origin, f"name {name!r} is used twice at the top level of the model")
        self.top_names.add(name)
        return name

    def top_level_ops(self, ops: list[Any], x: str, section: Origin,
                      positions: list[int] | None = None) -> tuple[str, list[TopOp]]:
        """Stem or head ops, each a top-level module (or a member of a `group.index` run). In
        the head, `num_classes` is a name (kept as the model's argument in the code)."""
        names = self.names_for(ops, self.top_names)
        out = []
        env: dict[str, Value] = {}
        if section[0] == "head" and self.spec.num_classes is not None:
            env["num_classes"] = self.spec.num_classes
        for i, (op, name) in enumerate(zip(ops, names, strict=True)):
            origin = (*section, positions[i] if positions else i)
            for key in ("when", "input"):
                if getattr(op, key) is not None:
                    raise self.error((*origin, key), f"{key!r} is only meaningful inside a block")
            if is_slot(op):
                raise self.error((*origin, "op"), "a shortcut slot belongs in a block")
            self.place(name, (*origin, "name") if "." in name else origin)
            concrete = self.substitute(op, self.top_layers, origin)
            if concrete is None:
                continue
            t = self.op_template(concrete, name, where=origin)
            in_channels = self.shape_of(x)[0]
            if t.module is not None:
                x, top = self.top_module(t, x, {"in_channels": in_channels, **env}, origin)
                out.append(top)
                continue
            values = self.evaluate(t, {"in_channels": in_channels, **env},
                                   lambda key, msg, o=origin: self.error((*o, key), msg))
            data = self.make_node(t, values, [self.shape_of(x)], name, origin)
            if data is None:
                continue
            x = self.add(name, data, [x])
            code = {k: (t.exprs[k].source if k in t.exprs and t.exprs[k].names == {"num_classes"}
                        else str(values[k]) if k in t.exprs else v)
                    for k, v in t.sources.items()}
            out.append(TopOp(name, t.kind, code, in_channels))
        return x, out

    def top_module(self, t: OpTemplate, x: str, env: Mapping[str, Value],
                   origin: Origin) -> tuple[str, TopOp]:
        """A module called in the stem or head: its ops under the call's name, its class
        instantiated with the call's arguments as values."""
        assert t.module is not None
        body = BlockBody(self, t.name, origin, self.shape_of(x))
        port = body.call(t, env, ("", None), "")
        if port[1] is not None or port[0] == "":
            raise self.error(origin, f"{t.name}: module {t.module.kind!r} returns"
                             f" {t.module.output!r}; return the value of an op")
        self.register_modules((t,))
        out = self.add_body(body.nodes, x, t.name + ".", port[0])
        code = {}
        for key, e in t.exprs.items():
            try:
                code[key] = repr(e.evaluate(env))
            except ExprError as err:
                raise self.error((*origin, key), str(err)) from None
        return out, TopOp(t.name, "module", code, self.shape_of(x)[0], module=t.module,
                          output=out)

    # ---- block templates ---------------------------------------------------------------------
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
        template = _SHARED_TEMPLATES.get(shared) if shared else None
        if template is None:
            template = self.new_template(kind, block, shortcut, layers, shared, origin, fixed)
            if shared:
                _remember(_SHARED_TEMPLATES, shared, template)
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

    # ---- bodies: ops, module calls and loops -------------------------------------------------
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
                k += n
                if any(isinstance(b, LoopTemplate) for b in body):
                    raise self.error((*where, i), "loops do not nest; make the inner loop a"
                                     " module's")
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

    # ---- block instances ---------------------------------------------------------------------
    def block_env(self, t: BlockTemplate, in_channels: int, channels: int, stride: int,
                  params: Mapping[str, Value], position: Mapping[str, Value],
                  origin: Origin) -> dict[str, Value]:
        env: dict[str, Value] = {"in_channels": in_channels, "channels": channels,
                                 "stride": stride, **position, **params}
        for var, e in t.vars:
            try:
                env[var] = e.evaluate(env)
            except ExprError as err:
                raise self.error(origin, f"block var {var!r}: {err}") from None
        try:
            out_channels = t.out_channels.evaluate(env)
        except ExprError as err:
            raise self.error(origin, f"out_channels: {err}") from None
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise self.error(origin, f"out_channels = {out_channels!r}; must be a positive whole"
                             " number")
        env["out_channels"] = out_channels
        return env

    def expand_block(self, t: BlockTemplate, in_shape: tuple[int, ...], channels: int,
                     stride: int, params: Mapping[str, Value], position: Mapping[str, Value],
                     block_id: str, origin: Origin) -> tuple[list[Node], str]:
        """The block's nodes relative to its prefix, and the name of its output."""
        env = self.block_env(t, in_shape[0], channels, stride, params, position, origin)
        body = BlockBody(self, block_id, origin, in_shape)
        where: dict[str, Any] = {BLOCK_INPUT: ("", None)}
        body.run(t.branch, env, where, "")
        y = body.port(t.output, env, where)
        if not t.residual:
            if y[1] is not None or y[0] == "":
                raise self.error(origin, f"{block_id}: the block returns {t.output!r}; return"
                                 " the value of an op (not a split's part or the input)")
            if body.shapes[y[0]][0] != env["out_channels"]:
                raise self.error(origin, f"{block_id}: the block returns {t.output!r} with"
                                 f" {body.shapes[y[0]][0]} channels; out_channels is"
                                 f" {env['out_channels']}")
            return body.nodes, y[0]
        shortcut: Port = ("", None)
        if stride != 1 or in_shape[0] != env["out_channels"]:
            start = body.port(t.projection_from, env, where) if t.projection_from else ("", None)
            shortcut = body.run(t.projection, env, {BLOCK_INPUT: start}, "", chain=True)
        if body.shape(y) != body.shape(shortcut):
            raise self.error(origin, f"{block_id}.add: cannot add the branch "
                             f"{format_shape(body.shape(y))} to the shortcut "
                             f"{format_shape(body.shape(shortcut))}")
        add = self.make_node(OpTemplate(RESIDUAL, "add", {}, {}), {},
                             [body.shape(y), body.shape(shortcut)], f"{block_id}.add", origin)
        assert add is not None
        body.nodes.append(Node(RESIDUAL, add, (y, shortcut), ("branch", "shortcut")))
        body.shapes[RESIDUAL] = add["shape"]
        where[RESIDUAL] = (RESIDUAL, None)
        out = body.run(t.post, env, where, "") if t.post else (RESIDUAL, None)
        assert out[1] is None
        return body.nodes, out[0]

    def condition(self, op: OpTemplate, env: Mapping[str, Value], block_id: str,
                  origin: Origin) -> bool:
        assert op.when is not None
        try:
            value = op.when.evaluate(env)
        except ExprError as e:
            raise self.error(origin, f"{block_id}.{op.name}.when: {e}") from None
        if not isinstance(value, bool):
            raise self.error(origin, f"{block_id}.{op.name}.when: {op.when.source} = {value!r};"
                             " a condition must be true or false (use a comparison)")
        return value

    def instantiate(self, t: BlockTemplate, x: str, channels: int, stride: int,
                    params: Mapping[str, Value], position: Mapping[str, Value], block_id: str,
                    origin: Origin) -> str:
        in_shape = self.shape_of(x)
        args = (in_shape, channels, stride, tuple((k, type(v), v) for k, v in params.items()),
                tuple(position[k] for k in t.position))
        cache = _SHARED_EXPANSIONS if t.shared_key else self.expansions
        key = (t.shared_key or t.class_name, *args)
        found = cache.get(key)
        if found is None:
            found = self.expand_block(t, in_shape, channels, stride, params, position, block_id,
                                      origin)
            _remember(cache, key, found)
        nodes, out = found
        zero_init = t.last_norm if self.layout.zero_init_last_norm else None
        return self.add_body(nodes, x, block_id + ".", out, zero_init)

    def add_body(self, nodes: list[Node], x: str, prefix: str, out: str,
                 zero_init: str | None = None) -> str:
        """Put a block's (or a top-level module call's) nodes into the graph under `prefix`,
        reading `x` as their input; returns the node of value `out`."""
        edges = self.edges
        for node in nodes:
            node_id = prefix + node.name
            data = node.data.copy()
            if node.name == zero_init:
                data["zero_init"] = True
            self.nodes[node_id] = data
            seen: dict[str, dict[str, Any]] = {}
            for index, ((i, part), role) in enumerate(zip(node.inputs, node.roles, strict=True)):
                src = prefix + i if i else x
                edge: dict[str, Any] = {"role": role, "index": index}
                if part is not None:
                    edge["part"] = part
                if src in seen:  # one source read twice: the edge lists every use
                    first = seen[src]
                    first.setdefault("uses", [[first["index"], first.get("part")]])
                    first["uses"].append([index, part])
                    continue
                seen[src] = edge
                edges.append((src, node_id, edge))
        return prefix + out

    def stage_params(self, si: int, block: Any) -> dict[str, Value]:
        """The block's params with `defaults` and the stage's overrides (checked at validation)."""
        params = dict(block.params)
        stage = self.spec.stages[si]
        for extra in (self.spec.defaults.model_extra or {}, stage.model_extra or {}):
            params.update({k: v for k, v in extra.items() if k in params})
        # a stage key the block also declares as a param (`dilation`) sets the param too
        for key in type(stage).model_fields:
            value = getattr(stage, key)
            if key in params and value is not None and key not in ("channels", "stride"):
                params[key] = value
        return params

    # ---- whole network -----------------------------------------------------------------------
    def run(self) -> tuple[IRGraph, Layout]:
        spec = self.spec
        shape = (spec.input.channels, spec.input.height, spec.input.width)
        x = self.add("input", annotate(REGISTRY["input"], {"op": "input", "input_shape": shape},
                                        [], shape), [])
        total = 0
        for si, stage in enumerate(spec.stages):
            total += stage.depth
            if total > MAX_BLOCKS:
                raise self.error(("stages", si, "depth"), f"the network would have {total:,} blocks"
                                 f" by this stage; the limit is {MAX_BLOCKS:,}")
        x, self.layout.stem = self.top_level_ops(spec.stem, x, ("stem",))
        self._stem_out = x
        first_block = 0
        geometries = stage_geometry(spec, self.shape_of(self._stem_out))
        for si, (stage, geometry) in enumerate(zip(spec.stages, geometries, strict=True)):
            x = self.stage(si, stage, x, geometry, first_block)
            first_block += stage.depth
        if isinstance(spec.head, list):
            pre_ops = self.list_head(spec.head, x)
        else:
            has_head = spec.head != "none"
            x, head = self.top_level_ops(spec.head.pre if has_head else [], x, ("head", "pre"))
            self.layout.head = head + (self.head(x) if has_head else [])
            pre_ops = len(head)
        self.outputs = self.feature_outputs(pre_ops)
        return self.finish()

    def list_head(self, items: list[Any], x: str) -> int:
        """A head written as ops: they run in order and must end in the classifier's
        num_classes outputs; `pre_logits` marks where forward_head(pre_logits=True) returns
        (before the last op when left out). Returns how many ops come before the global pool."""
        positions = [i for i, item in enumerate(items) if item != PRE_LOGITS]
        ops = [items[i] for i in positions]
        x, head = self.top_level_ops(ops, x, ("head",), positions)
        self.layout.head = head
        shape = self.shape_of(x)
        if shape != (self.spec.num_classes,):
            raise self.error(("head",), f"the head ends in {format_shape(shape)}; it must end in"
                             f" the classifier's {self.spec.num_classes} outputs (num_classes), or"
                             " write head: none and list the feature maps under outputs:")
        if PRE_LOGITS in items:
            before = {ops[k].name or "" for k, i in enumerate(positions)
                      if i < items.index(PRE_LOGITS)}
            kept = [k for k, top in enumerate(head) if top.node_id in before]
            self.layout.pre_logits = kept[-1] + 1 if kept else 0
        else:
            self.layout.pre_logits = len(head) - 1
        roles = [REGISTRY[top.kind].role if top.module is None else "" for top in head]
        return roles.index("global_pool") if "global_pool" in roles else len(head)

    def layer_choices(self, stage: Any, origin: Origin) -> dict[str, Any]:
        """Which op replaces bn, relu, conv and fills the anti_alias slot in this stage."""
        out = {}
        for setting, kind in LAYER_SETTINGS.items():
            choice = getattr(stage, setting, None) if stage is not None else None
            where: Origin = (*origin, setting)
            if choice is None:
                choice, where = getattr(self.spec.defaults, setting), ("defaults", setting)
            if choice is not None:
                out[kind] = layer_mapping(setting, choice, lambda msg, w=where: self.error(w, msg),
                                           self.modules if setting == "attn" else {})
                self.choice_origin[(kind, freeze(out[kind]))] = where
        return out

    def stage(self, si: int, stage: Any, x: str, geometry: tuple[int, int, int],
              first_block: int) -> str:
        origin: Origin = ("stages", si)
        if stage.block not in self.blocks:  # refused at validation; a Spec built in code may not be
            raise self.error((*origin, "block"), f"unknown block {stage.block!r}")
        block = self.blocks[stage.block]
        shortcut = stage.shortcut or self.spec.defaults.shortcut or block.shortcut
        if shortcut not in self.shortcuts and shortcut != NO_SHORTCUT:
            raise self.error(origin, f"unknown shortcut {shortcut!r} (shortcuts: "
                             f"{', '.join(sorted(self.shortcuts))})")
        name = self.place(stage.name or f"layer{si + 1}", (*origin, "name"))
        params = self.stage_params(si, block)
        layers = self.layer_choices(stage, origin)
        t = self.block_template(stage.block, block, shortcut, layers, origin)
        stage_stride, dilation, previous = geometry
        total = sum(st.depth for st in self.spec.stages)
        rate = self.spec.defaults.drop_path_rate
        instances = []
        pattern = stage.block_names or "{i}"
        for j in range(stage.depth):
            block_id = f"{name}.{pattern.replace('{i}', str(j)).replace('{n}', str(j + 1))}"
            stride = stage_stride if j == 0 else 1
            index = first_block + j
            position: dict[str, Value] = {
                "block_index": j, "stage_index": si, "stage_blocks": stage.depth,
                "global_block_index": index, "total_blocks": total, "dilation": dilation,
                "first_dilation": previous if j == 0 else dilation,
                "drop_path_rate": rate * index / (total - 1) if total > 1 else 0.0,
                "aa": "anti_alias" in layers, "attn": "se" in layers}
            in_channels = self.shape_of(x)[0]
            channels = stage.channels[j] if isinstance(stage.channels, list) else stage.channels
            own = {k: (v[j] if isinstance(v, list) else v) for k, v in params.items()}
            x = self.instantiate(t, x, channels, stride, own, position, block_id, origin)
            used = {k: position[k] for k in t.position}
            instances.append(BlockInstance(block_id, t.class_name, in_channels,
                                           channels, stride, own, used))
        self.layout.stages.append(StageLayout(name, tuple(instances)))
        return x

    def head(self, x: str) -> list[TopOp]:
        """Global pooling, optional dropout, the classifier (linear after flatten, or a 1x1 conv
        before it), optionally gathered under one module path."""
        head = self.spec.head
        prefix = f"{head.path}." if head.path else ""
        pool_name = "global_pool" if head.path or head.pool == "max" else "avgpool"
        steps: list[tuple[str, str, dict[str, Any], Origin]] = [
            (pool_name, "global_pool", {"mode": head.pool}, ("head", "pool"))]
        flatten = ("flatten", "flatten", {}, ("head",))
        if head.classifier == "linear":
            steps.append(flatten)
        if head.dropout:
            steps.append(("drop" if head.path else "dropout", "dropout", {"p": head.dropout},
                          ("head", "dropout")))
        out = []
        for name, kind, attrs, origin in steps:
            x = self.head_node(prefix + name, kind, attrs, x, origin, out)
        fc = prefix + head.fc
        features = self.shape_of(x)[0]
        if head.classifier == "conv":
            attrs = {"channels": self.spec.num_classes, "kernel": 1, "stride": 1, "padding": 0,
                     "dilation": 1, "groups": 1, "bias": True}
            code = {**attrs, "channels": "num_classes"}
            x = self.head_node(fc, "conv", attrs, x, ("head", "fc"), out, code)
            x = self.head_node(prefix + "flatten", "flatten", {}, x, ("head",), out)
        else:
            attrs = {"in_features": features, "out_features": self.spec.num_classes, "bias": True}
            x = self.head_node(fc, "linear", attrs, x, ("head", "fc"), out,
                               {"out_features": "num_classes"})
        return out

    def head_node(self, name: str, kind: str, attrs: dict[str, Any], x: str, origin: Origin,
                  out: list[TopOp], code: dict[str, Any] | None = None) -> str:
        self.place(name, origin)
        data = self.make_node(OpTemplate(name, kind, attrs, {}), attrs, [self.shape_of(x)],
                              name, origin)
        out.append(TopOp(name, kind, code if code is not None else attrs, self.shape_of(x)[0]))
        return self.add(name, data, [x])

    def feature_outputs(self, pre_ops: int) -> dict[str, str]:
        """`outputs:` as name -> node id. A name is a module path the model's forward passes
        through: a stem or head.pre op (or a container of them), a stage, a block (`layer2.1`)
        or the node that ends a block (`layer2.1.relu`)."""
        if not self.spec.outputs:
            return {}
        visible: dict[str, str] = {}

        def see(path: str, node: str) -> None:
            parts = path.split(".")
            for k in range(1, len(parts) + 1):
                visible[".".join(parts[:k])] = node  # a container means its last module's output

        for top in self.layout.stem:
            see(top.node_id, top.out_node)
        block_of = {b.id: stage for stage in self.layout.stages for b in stage.blocks}
        ends: dict[str, str] = {}
        for node in self.nodes:
            block = node.rpartition(".")[0]
            while block and block not in block_of:
                block = block.rpartition(".")[0]
            if block:
                ends[block] = node
        for stage in self.layout.stages:
            for b in stage.blocks:
                see(b.id, ends[b.id])
                visible[ends[b.id]] = ends[b.id]
        for top in self.layout.head[:pre_ops]:
            see(top.node_id, top.out_node)
        head = {top.node_id for top in self.layout.head[pre_ops:]}
        order = {node: i for i, node in enumerate(self.nodes)}
        out: dict[str, str] = {}
        taken: dict[str, str] = {}
        for i, name in enumerate(self.spec.outputs or ()):
            where = ("outputs", i)
            node = visible.get(name)
            if node is None:
                inside = next((b for b in ends if name.startswith(b + ".")), None)
                if name in head or any(h.startswith(name + ".") for h in head):
                    why = "is part of the head (pool and classifier); the logits come last anyway"
                elif inside is not None and name in self.nodes:
                    why = (f"is inside block {inside}, whose forward hides it; name the block"
                           f" ({inside}) or its stage")
                else:
                    why = f"is no stage, block or stem op{did_you_mean(name, list(visible))}"
                raise self.error(where, f"{name!r} {why}")
            if node in taken:
                raise self.error(where, f"{name!r} is the same feature map as {taken[node]!r}")
            if name == "logits" and self.layout.head:
                raise self.error(where, "'logits' names the classifier's output; choose another")
            if out and order[node] < order[out[previous := list(out)[-1]]]:
                raise self.error(where, f"{name!r} comes before {previous!r} in the network; list"
                                 " outputs in the order the network computes them")
            taken[node] = name
            out[name] = node
        return out

    def finish(self) -> tuple[IRGraph, Layout]:
        spec = self.spec
        total_params = sum(d["params"] for d in self.nodes.values())
        if total_params > self.max_params:
            raise ParamLimitError.single(
                "", f"the network has {total_params:,} parameters ({format_bytes(total_params * 4)}"
                f" in fp32), above the limit of {self.max_params:,}", self.doc.source)
        data = spec.normalised()  # spec_text keeps the order of keys, which block params'
        attrs = dict(             # order in the generated code follows
            name=spec.name, input_shape=tuple(self.nodes["input"]["shape"]),
            num_classes=spec.num_classes if spec.head != "none" else None,
            spec_sha256=spec.sha256_of(data), spec_text=json.dumps(data, separators=(",", ":")),
            preprocessing=Preprocessing.from_spec(spec).to_json(),
            compiler_version=__version__,
            output=self.layout.head[-1].node_id if spec.head != "none" else None,
            outputs=self.outputs, total_params=total_params,
            total_macs=sum(d["macs"] for d in self.nodes.values()),
            total_acts=sum(d["acts"] for d in self.nodes.values()),
        )
        fold_unset_module_params(self.layout)
        return IRGraph(self.nodes, self.edges, attrs), self.layout


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


def build_graph(spec: Any, doc: Document | None = None,
                max_params: int = DEFAULT_MAX_PARAMS) -> tuple[IRGraph, Layout]:
    """Expand `spec` into the shape-checked, annotated graph and its code layout; raises
    SpecError."""
    expander = _Expander(spec, doc, max_params)
    try:
        return expander.run()
    except ExprError as e:  # every evaluation names its place; this is the net beneath them
        raise expander.error((), f"an expression cannot be evaluated: {e}") from None

