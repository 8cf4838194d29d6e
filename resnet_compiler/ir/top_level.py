"""The stem and head: top-level ops and module calls, the head's pooling and classifier.

A part of the expander (ir/expand.py), which mixes the parts together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..language.expr import ExprError, Value
from ..language.spec import PRE_LOGITS
from ..messages import format_shape
from ..ops import REGISTRY
from .instances import BlockBody
from .residual import is_slot
from .templates import (
    OpTemplate,
    Origin,
    TopOp,
)


class TopLevel:
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
