"""What a class's code need not carry: values every use of it fixes, folded into its template.

A block class folds the switches its layer choices and stages fix (`specialise`, while it is
built). A module class, once the whole network is known, folds the params that no call of it
gives: they are its defaults everywhere, so the network's SEModule computes its width from
`in_channels / reduction` and takes no `channels` or `ratio` it never uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..language.expr import ExprError, Value
from ..ops import REGISTRY
from .templates import Item, Layout, LoopTemplate, ModuleTemplate, OpTemplate, flat_ops


def specialise(t: OpTemplate, known: Mapping[str, Value]) -> OpTemplate | None:
    """`t` with names the class fixes folded in; None when its `when` is then always false."""
    when = t.when.partial(known) if t.when is not None else None
    if when is not None and when.constant:
        try:
            if not when.evaluate({}):
                return None
            when = None
        except ExprError:
            pass  # each instance reports it, at its stage
    exprs = {k: e.partial(known) for k, e in t.exprs.items()}
    sources = {k: (exprs[k].source if k in exprs else v) for k, v in t.sources.items()}
    if t.module is None and REGISTRY[t.kind].identity_condition(sources) == "True":
        return None  # a no-op in every instance of the class
    return OpTemplate(t.name, t.kind, sources, exprs, when, t.inputs, t.module)


def fold_unset_module_params(layout: Layout) -> None:
    """Replace each module class of `layout` by itself with the params no call gives folded."""
    given: dict[str, set[str]] = {name: set() for name in layout.modules}
    calls = [op for t in layout.classes.values() for op in t.ops()]
    calls += [op for m in layout.modules.values() for op in flat_ops(m.body)]
    for op in calls:
        if op.module is not None:
            given.setdefault(op.module.class_name, set()).update(op.exprs)
    for top in (*layout.stem, *layout.head):
        if top.module is not None:
            given.setdefault(top.module.class_name, set()).update(top.sources)
    for name, t in list(layout.modules.items()):
        unset = {k: v for k, v in t.params.items() if k not in given.get(name, set())}
        if unset:
            layout.modules[name] = _folded(t, unset) or t


def _folded(t: ModuleTemplate, known: dict[str, Value]) -> ModuleTemplate | None:
    """`t` with the `known` params folded; None when that would leave an op out (a `when` always
    false), which the class then keeps as a switch."""
    known = dict(known)
    variables = []
    for var, e in t.vars:
        e = e.partial(known)
        if e.constant:
            try:
                known[var] = e.evaluate({})
                continue
            except ExprError:
                pass
        variables.append((var, e))
    body: list[Item] = []
    for item in t.body:
        if isinstance(item, LoopTemplate):
            inner = [specialise(op, known) for op in item.body]
            if any(op is None for op in inner):
                return None
            body.append(LoopTemplate(item.count.partial(known), item.index, tuple(inner)))
            continue
        op = specialise(item, known)
        if op is None:
            return None
        body.append(op)
    return replace(t, params={k: v for k, v in t.params.items() if k not in known},
                   vars=tuple(variables), body=tuple(body),
                   checks=tuple((c.partial(known), msg) for c, msg in t.checks))
