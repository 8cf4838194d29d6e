"""Expansion of a validated spec into the graph IR (a networkx DiGraph, one node per op).

Node ids are the module paths of the generated PyTorch code (`layer1.0.conv1`), so node ids,
state_dict keys and ONNX initializer names line up. Each node carries `op`, its concrete
attributes, `shape` (without batch), and, after `complexity.annotate`, `params`, `macs` and
`tensors`. The graph also records what the code emitter needs to print readable classes: one
template per block class and the order of stem, stage and head modules.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from . import __version__
from .blocks import builtin_library
from .complexity import annotate
from .errors import SpecError
from .expr import Expr, ExprError, Value
from .load import Document, format_path
from .shapes import ShapeError, output_shape
from .spec import Block, Spec

SIZE_FIELDS = {"channels": 1, "kernel": 1, "stride": 1, "dilation": 1, "groups": 1, "padding": 0}
DEFAULT_MAX_PARAMS = 4_000_000_000
# Expansion is linear in the number of blocks; the deepest published ResNets have a few hundred.
# The limit keeps a short spec with `depth: 1000000000` from hanging the compiler.
MAX_BLOCKS = 5_000


def op_sources(op: Any, conv_bias: bool) -> dict[str, Any]:
    """An op's attributes as expression sources, with the defaults filled in.

    Sizes are expression text ("3", "stride", "width"); flags and floats stay values. The same
    sources are evaluated for the graph and printed into the generated code.
    """
    raw = op.model_dump(exclude={"op", "name", "when"}, exclude_none=True)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        out[key] = Expr(str(value)).source if key in SIZE_FIELDS else value
    kind = op.op
    if kind == "conv":
        out.setdefault("bias", conv_bias)
        if "padding" not in out:
            k, d = out["kernel"], out["dilation"]
            out["padding"] = Expr(f"({d}) * (({k}) - 1) // 2").source
    elif kind in ("maxpool", "avgpool"):
        out.setdefault("stride", out["kernel"])
        out.setdefault("padding", Expr(f"({out['kernel']}) // 2").source)
    return {k: _fold(v) for k, v in out.items()}


def _fold(value: Any) -> Any:
    """Constant sub-expressions become their value's text ("(3 - 1) // 2" -> "1")."""
    if isinstance(value, str):
        e = Expr(value)
        if not e.names:
            return str(e.evaluate({}))
    return value


class _Expander:
    def __init__(self, spec: Spec, doc: Document | None, max_params: int):
        self.spec = spec
        self.doc = doc or Document(None, "<spec>")
        self.max_params = max_params
        library = builtin_library()
        for kind in ("blocks", "shortcuts"):
            for name in getattr(spec, kind):
                if name in getattr(library, kind):
                    raise self.error((kind, name), f"{name!r} is a built-in {kind[:-1]}; "
                                                   "give yours another name")
        self.blocks: dict[str, Block] = {**library.blocks, **spec.blocks}
        self.shortcuts = {**library.shortcuts, **spec.shortcuts}
        self.g = nx.DiGraph()
        self.classes: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.class_names: set[str] = set()
        self.top_names: set[str] = set()
        self.groups: set[str] = set()  # `group.index` stem/head names already gathered

    def error(self, path: Iterable[str | int], message: str) -> SpecError:
        return self.doc.error(tuple(path), message)

    # ---- nodes -------------------------------------------------------------------------------
    def add_node(self, node_id: str, op: str, attrs: dict[str, Any], inputs: list[str],
                 origin: tuple[str | int, ...], block: str | None = None,
                 roles: tuple[str, ...] = ("input",)) -> str:
        shapes = [self.g.nodes[i]["shape"] for i in inputs]
        try:
            shape = output_shape(op, attrs, shapes)
        except ShapeError as e:
            raise self.error(origin, f"{node_id}: {e}") from None
        self.g.add_node(node_id, op=op, **attrs, shape=shape, origin=format_path(origin),
                        block=block)
        for index, (src, role) in enumerate(zip(inputs, roles, strict=True)):
            self.g.add_edge(src, node_id, role=role, index=index)
        return node_id

    def evaluate(self, sources: Mapping[str, Any], env: Mapping[str, Value],
                 origin: tuple[str | int, ...], node_id: str, in_block: bool) -> dict[str, Any]:
        """Evaluate size expressions; errors point at the op's key, or, for an op of a block
        template, at the stage that instantiated it, naming the op."""
        values = {}

        def fail(key: str, message: str) -> SpecError:
            if in_block:
                return self.error(origin, f"{node_id}.{key}: {message}")
            return self.error((*origin, key), message)

        for key, src in sources.items():
            if key not in SIZE_FIELDS:
                values[key] = src
                continue
            try:
                v = Expr(src).evaluate(env)
            except ExprError as e:
                raise fail(key, str(e)) from None
            if isinstance(v, bool) or not isinstance(v, int):
                raise fail(key, f"{src} = {v!r}; sizes must be whole numbers")
            if v < SIZE_FIELDS[key]:
                raise fail(key, f"{src} = {v}; must be at least {SIZE_FIELDS[key]}")
            values[key] = v
        return values

    def apply_op(self, op: Any, node_id: str, x: str, env: dict[str, Value],
                 origin: tuple[str | int, ...], block: str | None = None) -> str:
        v = self.evaluate(op_sources(op, self.spec.defaults.conv_bias), env, origin, node_id,
                          block is not None)
        channels = self.g.nodes[x]["shape"][0]
        kind = op.op
        if kind == "conv":
            attrs = {"in_channels": channels, "out_channels": v["channels"], "kernel": v["kernel"],
                     "stride": v["stride"], "padding": v["padding"], "dilation": v["dilation"],
                     "groups": v["groups"], "bias": v["bias"]}
        elif kind == "bn":
            attrs = {"channels": channels, "eps": v["eps"], "momentum": v["momentum"]}
        elif kind == "se":
            attrs = {"channels": channels, "rd_channels": v["channels"]}
        elif kind == "maxpool":
            attrs = {k: v[k] for k in ("kernel", "stride", "padding", "ceil_mode")}
        elif kind == "avgpool":
            attrs = {k: v[k] for k in ("kernel", "stride", "padding", "ceil_mode",
                                       "count_include_pad")}
        else:
            attrs = {}
        return self.add_node(node_id, kind, attrs, [x], origin, block)

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

    def claim_top(self, name: str, origin: tuple[str | int, ...]) -> str:
        if name in self.top_names:
            raise self.error(origin, f"name {name!r} is used twice at the top level of the model")
        self.top_names.add(name)
        return name

    def top_level_ops(self, ops: list[Any], x: str, section: tuple[str | int, ...]
                      ) -> tuple[str, list[str]]:
        names = self.names_for(ops, self.top_names)
        ids = []
        group, expected = None, 0
        for i, (op, name) in enumerate(zip(ops, names, strict=True)):
            origin = (*section, i)
            if op.when is not None:
                raise self.error((*origin, "when"), "'when' is only meaningful inside a block")
            prefix, _, index = name.partition(".")
            if index:  # `group.index`: consecutive ops of one nn.Sequential, numbered from 0
                if prefix != group:
                    if prefix in self.groups:
                        raise self.error((*origin, "name"), f"{name!r}: ops of group {prefix!r} "
                                         "must be consecutive")
                    self.claim_top(prefix, (*origin, "name"))
                    self.groups.add(prefix)
                    group, expected = prefix, 0
                if int(index) != expected:
                    raise self.error((*origin, "name"), f"{name!r}: ops of group {prefix!r} must "
                                     f"be numbered from 0 in order ({prefix}.{expected} expected)")
                expected += 1
            else:
                group = None
                self.claim_top(name, origin)
            x = self.apply_op(op, name, x, {"in_channels": self.g.nodes[x]["shape"][0]}, origin)
            ids.append(x)
        return x, ids

    # ---- blocks ------------------------------------------------------------------------------
    def stage_params(self, si: int, block: Block) -> dict[str, Value]:
        params = dict(block.params)
        defaults = self.spec.defaults.model_extra or {}
        stage_extra = self.spec.stages[si].model_extra or {}
        for source, extra, strict in ((("defaults",), defaults, False),
                                      (("stages", si), stage_extra, True)):
            for key, value in extra.items():
                if key not in params:
                    if strict:
                        close = difflib.get_close_matches(key, list(params) + list(STAGE_KEYS), 1)
                        hint = f"; did you mean {close[0]!r}?" if close else ""
                        raise self.error((*source, key), f"unknown key {key!r} for block "
                                         f"{self.spec.stages[si].block!r} (params: "
                                         f"{', '.join(params) or 'none'}){hint}")
                    continue
                default = params[key]
                if not _same_kind(default, value):
                    raise self.error((*source, key), f"must be {_kind(default)} like the default"
                                     f" {default!r}, got {value!r}")
                params[key] = value
        return params

    def block_class(self, kind: str, block: Block, shortcut: str, params: dict[str, Value],
                    origin: tuple[str | int, ...]) -> dict[str, Any]:
        """The template record for the generated class; `when` resolves per params."""
        when_env = dict(params)
        fixed: dict[str, Value] = {}

        def keep(op: Any, i: int, section: str) -> bool:
            if op.when is None:
                return True
            e = Expr(op.when)
            for n in e.names:
                if n not in params:
                    raise self.error(("blocks", kind, section, i, "when"),
                                     f"'when' may only use the block's params, not {n!r}")
                fixed[n] = params[n]
            return bool(e.evaluate(when_env))

        branch = [op for i, op in enumerate(block.branch) if keep(op, i, "branch")]
        post = [op for i, op in enumerate(block.post) if keep(op, i, "post")]
        projection = [op for i, op in enumerate(self.shortcuts[shortcut]) if keep(op, i, "shortcut")]
        if not branch:
            raise self.error(origin, f"block {kind!r} has no branch ops left after 'when'")
        key = (kind, shortcut, tuple(sorted(fixed.items())))
        if key in self.classes:
            return self.classes[key]
        base = block.class_name or "".join(p.capitalize() for p in kind.split("_")) + "Block"
        name, n = base, 1
        while name in self.class_names:
            n += 1
            name = f"{base}{n}"
        self.class_names.add(name)
        for section, ops in (("branch", block.branch), ("post", block.post)):
            for i, op in enumerate(ops):
                if op.name and "." in op.name:
                    raise self.error(("blocks", kind, section, i, "name"), f"{op.name!r}: dotted "
                                     "names group stem and head ops; inside a block use plain names")
        scope = self.names_for(branch + post, {"downsample", "add"})
        branch_names, post_names = scope[: len(branch)], scope[len(branch):]
        for nm in (*branch_names, *post_names):
            if (*branch_names, *post_names).count(nm) > 1:
                raise self.error(("blocks", kind), f"op name {nm!r} is used twice in the block")
        if block.projection_from and block.projection_from not in branch_names:
            raise self.error(("blocks", kind, "projection_from"),
                             f"no branch op named {block.projection_from!r}")
        conv_bias = self.spec.defaults.conv_bias

        def record(ops: list[Any], names: list[str]) -> list[dict[str, Any]]:
            return [{"name": nm, "op": op.op, **op_sources(op, conv_bias)}
                    for op, nm in zip(ops, names, strict=True)]

        bns = [nm for op, nm in zip(branch, branch_names, strict=True) if op.op == "bn"]
        rec = {
            "class_name": name, "kind": kind, "shortcut": shortcut,
            "params": dict(block.params), "fixed": fixed, "vars": list(block.vars.items()),
            "out_channels": Expr(str(block.out_channels)).source,
            "branch": record(branch, branch_names), "post": record(post, post_names),
            "projection": record(projection, [f"downsample.{i}" for i in range(len(projection))]),
            "projection_from": block.projection_from,
            "last_bn": bns[-1] if bns else None,
            "ops": {"branch": branch, "post": post, "projection": projection},
        }
        self.classes[key] = rec
        return rec

    def expand_block(self, rec: dict[str, Any], block: Block, block_id: str, x: str,
                     channels: int, stride: int, params: dict[str, Value],
                     origin: tuple[str | int, ...]) -> str:
        in_channels = self.g.nodes[x]["shape"][0]
        env: dict[str, Value] = {"in_channels": in_channels, "channels": channels,
                                 "stride": stride, **params}
        for var, src in block.vars.items():
            try:
                env[var] = Expr(src).evaluate(env)
            except ExprError as e:
                raise self.error(origin, f"block var {var!r}: {e}") from None
        try:
            out_channels = Expr(str(block.out_channels)).evaluate(env)
        except ExprError as e:
            raise self.error(origin, f"out_channels: {e}") from None
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise self.error(origin, f"out_channels = {out_channels!r}; must be a positive whole number")
        env["out_channels"] = out_channels
        ops = rec["ops"]
        y, saved = x, {}
        for op, entry in zip(ops["branch"], rec["branch"], strict=True):
            y = self.apply_op(op, f"{block_id}.{entry['name']}", y, env, origin, block_id)
            saved[entry["name"]] = y
        shortcut = x
        if stride != 1 or in_channels != out_channels:
            shortcut = saved[rec["projection_from"]] if rec["projection_from"] else x
            for op, entry in zip(ops["projection"], rec["projection"], strict=True):
                shortcut = self.apply_op(op, f"{block_id}.{entry['name']}", shortcut, env,
                                         origin, block_id)
        y = self.add_node(f"{block_id}.add", "add", {}, [y, shortcut], origin, block_id,
                          roles=("branch", "shortcut"))
        for op, entry in zip(ops["post"], rec["post"], strict=True):
            y = self.apply_op(op, f"{block_id}.{entry['name']}", y, env, origin, block_id)
        return y

    # ---- whole network -----------------------------------------------------------------------
    def run(self) -> nx.DiGraph:
        spec = self.spec
        shape = (spec.input.channels, spec.input.height, spec.input.width)
        x = self.add_node("input", "input", {"input_shape": shape}, [], ("input",), roles=())
        self.top_names.add("input")
        total = 0
        for si, stage in enumerate(spec.stages):
            total += stage.depth
            if total > MAX_BLOCKS:
                raise self.error(("stages", si, "depth"), f"the network would have {total:,} blocks"
                                 f" by this stage; the limit is {MAX_BLOCKS:,}")
        x, stem_ids = self.top_level_ops(spec.stem, x, ("stem",))
        layout: dict[str, Any] = {"stem": stem_ids, "stages": [], "head": []}
        used_defaults: set[str] = set()
        for si, stage in enumerate(spec.stages):
            origin = ("stages", si)
            if stage.block not in self.blocks:
                close = difflib.get_close_matches(stage.block, list(self.blocks), 1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.error((*origin, "block"), f"unknown block {stage.block!r} (blocks: "
                                 f"{', '.join(sorted(self.blocks))}){hint}")
            block = self.blocks[stage.block]
            shortcut = stage.shortcut or spec.defaults.shortcut or block.shortcut
            if shortcut not in self.shortcuts:
                where = (*origin, "shortcut") if stage.shortcut else (
                    ("defaults", "shortcut") if spec.defaults.shortcut else origin)
                raise self.error(where, f"unknown shortcut {shortcut!r} (shortcuts: "
                                 f"{', '.join(sorted(self.shortcuts))})")
            name = self.claim_top(stage.name or f"layer{si + 1}", (*origin, "name"))
            params = self.stage_params(si, block)
            used_defaults |= set(block.params)
            rec = self.block_class(stage.block, block, shortcut, params, origin)
            instances = []
            for j in range(stage.depth):
                stride = stage.stride if j == 0 else 1
                in_channels = self.g.nodes[x]["shape"][0]
                x = self.expand_block(rec, block, f"{name}.{j}", x, stage.channels, stride,
                                      params, origin)
                instances.append({"id": f"{name}.{j}", "class": rec["class_name"],
                                  "in_channels": in_channels, "channels": stage.channels,
                                  "stride": stride, "params": params})
            layout["stages"].append({"name": name, "blocks": instances})
        for key in spec.defaults.model_extra or {}:
            if key not in used_defaults:
                known = sorted(used_defaults | set(type(spec.defaults).model_fields))
                close = difflib.get_close_matches(key, known, 1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.error(("defaults", key), f"unknown key {key!r}: not a setting and not a"
                                 f" param of any block used (known: {', '.join(known)}){hint}")
        x, head_ids = self.top_level_ops(spec.head.pre, x, ("head", "pre"))
        pool = self.claim_top("avgpool" if spec.head.pool == "avg" else "global_pool", ("head", "pool"))
        x = self.add_node(pool, "global_pool", {"mode": spec.head.pool}, [x], ("head", "pool"))
        x = self.add_node(self.claim_top("flatten", ("head",)), "flatten", {}, [x], ("head",))
        head_ids += [pool, "flatten"]
        if spec.head.dropout:
            x = self.add_node(self.claim_top("dropout", ("head", "dropout")), "dropout",
                              {"p": spec.head.dropout}, [x], ("head", "dropout"))
            head_ids.append("dropout")
        fc = self.claim_top(spec.head.fc, ("head", "fc"))
        features = self.g.nodes[x]["shape"][0]
        self.add_node(fc, "linear", {"in_features": features, "out_features": spec.num_classes,
                                     "bias": True}, [x], ("head", "fc"))
        head_ids.append(fc)
        layout["head"] = head_ids

        g = self.g
        g.graph.update(
            name=spec.name, input_shape=shape, num_classes=spec.num_classes,
            spec_sha256=spec.sha256(), compiler_version=__version__,
            zero_init_last_bn=spec.defaults.zero_init_last_bn, output=fc, layout=layout,
            classes={rec["class_name"]: {k: v for k, v in rec.items() if k != "ops"}
                     for rec in self.classes.values()},
        )
        annotate(g)
        if g.graph["total_params"] > self.max_params:
            p = g.graph["total_params"]
            raise self.error((), f"the network has {p:,} parameters ({_bytes(p * 4)} in"
                                 f" fp32), above the limit of {self.max_params:,}; raise it with"
                                 " --max-params if you mean it")
        return g


STAGE_KEYS = ("block", "depth", "channels", "stride", "name", "shortcut")


def _bytes(n: int) -> str:
    """A memory size in the largest binary unit that keeps it at least 1 (44.6 MiB, 3.4 TiB)."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    value, unit = float(n), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    return f"{value:,.1f} {units[unit]}" if unit else f"{n} bytes"


def _kind(value: Value) -> str:
    return "a boolean" if isinstance(value, bool) else ("a whole number" if isinstance(value, int)
                                                        else "a number")


def _same_kind(default: Value, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")


def build_graph(spec: Spec, doc: Document | None = None,
                max_params: int = DEFAULT_MAX_PARAMS) -> nx.DiGraph:
    """Expand `spec` into the shape-checked, annotated graph; raises SpecError."""
    return _Expander(spec, doc, max_params).run()
