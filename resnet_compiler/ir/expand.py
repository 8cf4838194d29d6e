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
from typing import Any

from ..errors import SpecError
from ..language.expr import ExprError, Value
from ..language.library import builtin_library
from ..language.load import Document
from ..language.preprocessing import Preprocessing
from ..messages import format_bytes, format_shape
from ..ops import REGISTRY, Context, ShapeError
from ..version import __version__
from .block_templates import Templates
from .cache import SHARED_EXPANSIONS, remember
from .choices import LayerChoices
from .feature_outputs import FeatureOutputs
from .folding import fold_unset_module_params
from .geometry import stage_geometry
from .graph import IRGraph
from .instances import BlockBody, Node, Port, annotate
from .naming import Naming
from .residual import NO_SHORTCUT
from .templates import (
    BlockInstance,
    BlockTemplate,
    Layout,
    ModuleTemplate,
    OpTemplate,
    Origin,
    StageLayout,
)
from .top_level import TopLevel
from .wiring import (
    BLOCK_INPUT,
    RESIDUAL,
)

# Expansion is linear in the number of blocks; the deepest published ResNets have a few hundred.
# The limit keeps a short spec with `depth: 1000000000` from hanging the compiler.
MAX_BLOCKS = 5_000
DEFAULT_MAX_PARAMS = 4_000_000_000


class ParamLimitError(SpecError):
    """The network has more parameters than the caller allows."""


class _Expander(Naming, LayerChoices, Templates, TopLevel, FeatureOutputs):
    """One compile: the spec's stem, stages and head expanded into graph nodes, with the code
    layout beside them; each part of the job is a mixin of its own module."""

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





    # ---- block templates ---------------------------------------------------------------------




    # ---- bodies: ops, module calls and loops -------------------------------------------------





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
        cache = SHARED_EXPANSIONS if t.shared_key else self.expansions
        key = (t.shared_key or t.class_name, *args)
        found = cache.get(key)
        if found is None:
            found = self.expand_block(t, in_shape, channels, stride, params, position, block_id,
                                      origin)
            remember(cache, key, found)
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






def build_graph(spec: Any, doc: Document | None = None,
                max_params: int = DEFAULT_MAX_PARAMS) -> tuple[IRGraph, Layout]:
    """Expand `spec` into the shape-checked, annotated graph and its code layout; raises
    SpecError."""
    expander = _Expander(spec, doc, max_params)
    try:
        return expander.run()
    except ExprError as e:  # every evaluation names its place; this is the net beneath them
        raise expander.error((), f"an expression cannot be evaluated: {e}") from None

