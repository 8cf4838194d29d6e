"""PyTorch source emitter: one standalone, readable file that imports only torch (and math when an
expression needs it).

Each block template becomes one class whose constructor takes the per-instance values
(in_channels, channels, stride and the block's params) and evaluates the template's expressions
verbatim; an op switched by `when:` is an optional submodule (None when off). Every op's
constructor and forward call come from the op table, so the code reads like torchvision's
`resnet.py` while staying a pure function of the graph and its layout.
"""

from __future__ import annotations

import linecache
import re
import sys
import textwrap
import types
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..ir.templates import (
    POSITION_DEFAULTS,
    BlockTemplate,
    Layout,
    OpTemplate,
    TopOp,
    flat_ops,
)
from ..ir.wiring import RESIDUAL
from ..language.expr import MAKE_DIVISIBLE_SOURCE, MATH_FUNCTIONS, Expr
from ..language.preprocessing import Preprocessing
from ..ops import REGISTRY
from .channel_text import rule_channels
from .code import INDENT, Entry, docstring, group_modules, indented, tree
from .pyformat import WIDTH, format_lines
from .torch_body import Body, code_of, module_class, module_expr

if TYPE_CHECKING:  # the emitters read the IR or a networkx graph alike
    import networkx as nx


def _lines(lines: Iterable[str]) -> str:
    return format_lines(lines)


# ---- block classes -------------------------------------------------------------------------------

def _op_names(op: OpTemplate) -> set[str]:
    names = {n for e in op.exprs.values() for n in e.names}
    return names | (set(op.when.names) if op.when else set())


def _used_names(t: BlockTemplate) -> set[str]:
    """Variables the class's expressions read, following vars that use earlier vars."""
    used = set(t.out_channels.names)
    for op in t.ops():
        used |= _op_names(op)
    for item in (*t.branch, *t.post):
        if not isinstance(item, OpTemplate):
            used |= item.count.names
    for name, e in reversed(t.vars):
        if name in used:
            used |= e.names
    return used


def constructor_params(t: BlockTemplate) -> dict[str, Any]:
    """Block params and position values (block_index, dilation, ...) that become keyword
    arguments of the class, with their defaults."""
    used = _used_names(t)
    out = {k: v for k, v in t.params.items() if k in used}
    out.update({k: POSITION_DEFAULTS[k] for k in t.position if k in used})
    return out


def _branch(t: BlockTemplate) -> tuple[list[str], list[str], str, Body]:
    """Constructor and forward lines of the branch and post ops, the channels feeding the
    projection, and where each value lives."""
    last = flat_ops(t.post)[-1].name if t.post else None if t.residual else t.output
    reads = [*([last] if last else []), *([t.projection_from] if t.projection_from else [])]
    v = Body([*t.branch, *t.post], reads, keep=t.projection_from,
             residual=(t.output, len(flat_ops(t.branch))) if t.residual else None)
    v.emit(t.branch)
    v.forward.append("@residual")
    v.emit(t.post)
    projection_in = v.channels[t.projection_from] if t.projection_from else "in_channels"
    groups = group_modules(v.groups, v.group_conditions)
    init = [line for item in v.init
            for line in (groups[item[7:]] if item.startswith("@group:") else [item])]
    return init, v.forward, projection_in, v


def _projection(t: BlockTemplate, ch: str) -> list[str]:
    """The projection shortcut: an nn.Sequential, with named children where the shortcut's ops
    are named (timm's downsample.conv)."""
    children = []
    for op in t.projection:
        module = module_expr(op, ch, inplace=False)
        if op.when is not None:
            module = f"{module} if {op.when.source} else nn.Identity()"
        children.append((op.name.partition(".")[2], [module]))
        after = rule_channels(REGISTRY[op.kind], code_of(op), [ch])
        ch = after if op.when is None or after == ch else f"({after} if {op.when.source} else {ch})"
    body = _container(children)
    return ["if stride != 1 or in_channels != out_channels:",
            f"{INDENT}self.downsample = {body[0]}", *(INDENT + line for line in body[1:]),
            "else:", f"{INDENT}self.downsample = None"]


def _block_class(t: BlockTemplate) -> str:
    """Source of one block class from its template."""
    used = _used_names(t)
    params = constructor_params(t)
    signature = ["self", "in_channels: int", "channels: int", "stride: int = 1"]
    if params:
        signature += ["*", *(f"{k}: {type(v).__name__} = {v!r}" for k, v in params.items())]
    init = ["super().__init__()"]
    init += [f"{k} = {e.source}" for k, e in t.vars if k in used]
    init.append(f"out_channels = {t.out_channels.source}")
    branch_init, body, projection_in, values = _branch(t)
    init += branch_init
    if t.residual:
        init += _projection(t, projection_in)
        source = "preact" if t.projection_from else "x"
        residual = [f"shortcut = x if self.downsample is None else self.downsample({source})",
                    f"out = {REGISTRY['add'].torch_call('', [values.expr(t.output), 'shortcut'])}"]
    else:
        residual = []
    forward = [line for item in body for line in (residual if item == "@residual" else [item])]
    last = flat_ops(t.post)[-1].name if t.post else RESIDUAL if t.residual else t.output
    forward.append(f"return {values.holder[last]}")
    lines = [f"class {t.class_name}(nn.Module):",
             *docstring(f"The {t.kind!r} block: {_describe(t)}.", INDENT), "",
             f"{INDENT}def __init__({', '.join(signature)}) -> None:", *indented(init), "",
             f"{INDENT}def forward(self, x: torch.Tensor) -> torch.Tensor:", *indented(forward)]
    return _lines(lines)


def _describe(t: BlockTemplate) -> str:
    def label(op: Any) -> str:
        if not isinstance(op, OpTemplate):  # a loop
            return f"{op.count.source}x({'-'.join(map(label, op.body))})"
        if op.module is not None:
            return op.module.kind + ("?" if op.when else "")
        return REGISTRY[op.kind].label(op.exprs) + ("?" if op.when else "")

    if not t.residual:
        return "-".join(map(label, t.branch)) + ("; '?' marks optional ops"
                                                 if any(o.when for o in t.ops()) else "")
    text = f"{'-'.join(map(label, t.branch))} plus a shortcut ({t.shortcut} when the shape changes)"
    post = "-".join(map(label, t.post))
    return text + (f", then {post}" if post else "") + ("; '?' marks optional ops"
                                                          if any(o.when for o in t.ops()) else "")


# ---- the model class -----------------------------------------------------------------------------

_FAMILY_SPELLING = (("seresnext", "SEResNeXt"), ("seresnet", "SEResNet"), ("resnext", "ResNeXt"),
                    ("skresnext", "SKResNeXt"), ("skresnet", "SKResNet"), ("resnest", "ResNeSt"),
                    ("res2next", "Res2NeXt"), ("res2net", "Res2Net"),
                    ("resnetv2", "ResNetV2"), ("resnet", "ResNet"), ("wide_resnet", "WideResNet"))
HELPER_NAMES = frozenset({
    "nn", "torch", "math", "OrderedDict", "I", "O", "make_divisible",
    *(m.group(1) for op in REGISTRY.values() for helper in op.torch_helpers
      for m in re.finditer(r"^class (\w+)", helper, re.M))})


def _class_name(name: str, taken: set[str]) -> str:
    """CamelCase from the spec name: resnet18_fashion_mnist -> ResNet18FashionMnist."""
    for prefix, spelled in _FAMILY_SPELLING:
        if name.lower().startswith(prefix):
            name = spelled + name[len(prefix):]
            break
    base = ""
    for part in re.split(r"[^A-Za-z0-9]+", name):
        if not part:
            continue
        glue = "_" if base[-1:].isdigit() and part[0].isdigit() else ""
        base += glue + part[0].upper() + part[1:]
    while base in taken or base in HELPER_NAMES:  # I, O: ambiguous names (E742)
        base += "Model"
    return base


def model_class_name(graph: nx.DiGraph, layout: Layout) -> str:
    """The generated model class's name, derived from the spec name."""
    return _class_name(graph.graph["name"], set(layout.classes))


def _top_entries(ops: list[TopOp], inplace_from: int, keep: frozenset[str] = frozenset()
                 ) -> list[Entry]:
    """Stem or head modules as (path, constructor) entries; ops in `keep` read a tensor the
    model returns, so they do not overwrite it."""
    entries = []
    previous_in_place = False
    for i, top in enumerate(ops):
        if top.module is not None:  # a module's class, with the call's arguments
            args = [str(top.in_channels), *(f"{k}={v}" for k, v in top.sources.items())]
            entries.append((top.node_id, [f"{top.module.class_name}({', '.join(args)})"]))
            previous_in_place = False
            continue
        opdef = REGISTRY[top.kind]
        in_place = i >= inplace_from and opdef.inplace_ok and not previous_in_place \
            and top.node_id not in keep
        entries.append((top.node_id, [opdef.torch_module(top.sources, str(top.in_channels),
                                                         in_place)]))
        # an activation's output may be what its backward needs: the next op makes a new one
        previous_in_place = in_place or (opdef.role == "act" and i >= inplace_from)
    return entries


def _stage_entries(layout: Layout) -> list[Entry]:
    """Each stage as an nn.Sequential of its blocks."""
    entries = []
    signature = {name: constructor_params(t) for name, t in layout.classes.items()}
    for stage in layout.stages:
        keys = [b.id.rpartition(".")[2] for b in stage.blocks]
        named = not all(k.isdigit() for k in keys)
        pairs = named and not all(k.isidentifier() for k in keys)  # torchvision's block1-0
        lines = ["nn.Sequential(", f"{INDENT}OrderedDict(", *([f"{INDENT * 2}["] if pairs else [])
                 ] if named else ["nn.Sequential("]
        pad = INDENT * (3 if pairs else 2 if named else 1)
        for inst in stage.blocks:
            defaults = signature[inst.class_name]
            args = [str(inst.in_channels), str(inst.channels)]
            if inst.stride != 1:
                args.append(f"stride={inst.stride}")
            values = {**inst.params, **inst.position}
            args += [f"{k}={values[k]!r}" for k in defaults if values[k] != defaults[k]
                     or type(values[k]) is not type(defaults[k])]
            key = inst.id.rpartition(".")[2]
            call = f"{inst.class_name}({', '.join(args)})"
            lines.append(f'{pad}("{key}", {call}),' if pairs else
                         f"{pad}{key}={call}," if named else f"{pad}{call},")
        close = [*([f"{INDENT * 2}]"] if pairs else []), f"{INDENT})"] if named else []
        entries.append((stage.name, [*lines, *close, ")"]))
    return entries


def _container(children: list[tuple[str, Any]]) -> list[str]:
    """An nn.Sequential of `children` (key, constructor lines or nested children): positional
    when the keys are 0, 1, ...; named (OrderedDict) otherwise."""
    numbered = all(key == str(i) for i, (key, _) in enumerate(children))
    lines = ["nn.Sequential(" if numbered else "nn.Sequential(", *([] if numbered else [
        f"{INDENT}OrderedDict("])]
    pad = INDENT if numbered else INDENT * 2
    for key, child in children:
        body = child if isinstance(child[0], str) else _container(child)
        head = "" if numbered else f"{key}="
        lines += [f"{pad}{head}{body[0]}", *(pad + b for b in body[1:])]
        lines[-1] += ","
    return [*lines, *([] if numbered else [f"{INDENT})"]), ")"]


def _model_body(entries: list[Entry]) -> tuple[list[str], list[str], bool]:
    """Constructor and forward lines for the top-level modules, and whether OrderedDict is
    needed."""
    init: list[str] = []
    forward: list[str] = []
    named = False
    for key, child in tree(entries):
        body = child if isinstance(child[0], str) else _container(child)
        named = named or any("OrderedDict" in line for line in body)
        init += [f"self.{key} = {body[0]}", *body[1:]]
        forward.append(f"x = self.{key}(x)")
    return init, forward, named


def _init_weights(graph: nx.DiGraph, layout: Layout) -> list[str]:
    kinds = {d["op"] for _, d in graph.nodes(data=True)}
    rules = [rule for kind, opdef in REGISTRY.items() if kind in kinds for rule in opdef.torch_init]
    by_body: dict[tuple[str, ...], list[str]] = {}  # one branch per body: StdConv2d's is Conv2d's
    for module_type, body in rules:
        by_body.setdefault(tuple(body), []).append(module_type)
    lines = ["for m in self.modules():"] if rules else ["pass"]
    for i, (body, types_) in enumerate(by_body.items()):
        classes = types_[0] if len(types_) == 1 else f"({', '.join(types_)})"
        lines.append(f"{INDENT}{'if' if i == 0 else 'elif'} isinstance(m, {classes}):")
        lines += [f"{INDENT * 2}{line}" for line in body]
    if layout.zero_init_last_norm:
        by_norm: dict[str, list[str]] = {}
        for name, t in layout.classes.items():
            if t.last_norm:
                by_norm.setdefault(t.last_norm, []).append(name)
        if by_norm:
            lines.append("# start each residual branch at zero so every block begins as identity")
            lines.append("for m in self.modules():")
            for i, (norm, names) in enumerate(by_norm.items()):
                kinds_text = names[0] if len(names) == 1 else f"({', '.join(names)})"
                lines.append(f"{INDENT}{'if' if i == 0 else 'elif'} isinstance(m, {kinds_text}):")
                lines.append(f"{INDENT * 2}nn.init.zeros_(m.{norm}.weight)")
    return lines


def _helpers(layout: Layout) -> tuple[list[str], list[str]]:
    """Helper sources (functions, classes) and `math` names the generated code needs."""
    ops = [op for t in layout.classes.values() for op in t.ops()]
    ops += [op for m in layout.modules.values() for op in flat_ops(m.body)]
    ops = [op for op in ops if op.module is None]
    kinds = [op.kind for op in ops] + [top.kind for top in (*layout.stem, *layout.head)]
    exprs: list[Expr] = [e for op in ops for e in op.exprs.values()]
    exprs += [e for t in layout.classes.values() for e in (t.out_channels, *(v for _, v in t.vars))]
    exprs += [e for m in layout.modules.values() for _, e in m.vars]
    functions = {f for e in exprs for f in e.functions}
    helpers = [MAKE_DIVISIBLE_SOURCE] if "make_divisible" in functions else []
    sources = [op.sources for op in ops] + [top.sources for top in (*layout.stem, *layout.head)]
    for kind, opdef in REGISTRY.items():
        if kind in kinds:
            uses = [src for k, src in zip(kinds, sources, strict=True) if k == kind]
            helpers += [h for h in opdef.torch_helpers_for(uses) if h not in helpers]
    return helpers, sorted(functions & MATH_FUNCTIONS)


def emit_torch(graph: nx.DiGraph, layout: Layout) -> str:
    """The PyTorch source for `graph`: deterministic, ruff-clean, torch-only."""
    from .torch_forward import (
        ends,
        feature_info,
        forward_methods,
        head_size,
        keep_inputs,
    )
    gg = graph.graph
    model_name = model_class_name(graph, layout)
    c, h, w = gg["input_shape"]
    helpers, math_names = _helpers(layout)
    keep = keep_inputs(graph, layout)
    entries = [*_top_entries(layout.stem, 1, keep), *_stage_entries(layout),
               *_top_entries(layout.head, 0, keep)]
    body, _, ordered = _model_body(entries)
    head_from = len(entries) - head_size(layout)
    classes = [_lines(module_class(m)) for m in layout.modules.values()]
    classes += [_block_class(t) for t in layout.classes.values()]
    ordered = ordered or any("OrderedDict(" in c for c in classes)
    header = [
        f'"""{gg["name"]}: a residual network generated by resnet-compiler {gg["compiler_version"]}.',
        "",
        f"Input {c}x{h}x{w}, {ends({**gg, 'outputs': None}) or 'no classifier head'},"
        f" {gg['total_params']:,} parameters, {gg['total_macs'] / 1e9:.3f} GMACs.",
        *textwrap.wrap(f"Returns {ends(gg)}." if gg.get("outputs") else "", WIDTH),
        f"Spec sha256: {gg['spec_sha256']}.",
        f"Preprocessing: {Preprocessing.from_json(gg['preprocessing']).describe()}.",
        "Regenerate rather than edit: resnet-compile SPEC --emit torch -o FILE",
        '"""',
        "",
        *(["from collections import OrderedDict"] if ordered else []),
        *([f"from math import {', '.join(math_names)}"] if math_names else []),
        *([""] if ordered or math_names else []),
        "import torch",
        "from torch import nn",
    ]
    parts = ["\n".join(header), *(h.strip("\n") for h in helpers), *classes]
    init = ["super().__init__()", *body]
    init.append("self._init_weights()")
    returns = f"{gg['num_classes']} logits" if not gg.get("outputs") else ends(gg)
    signature = "" if gg["num_classes"] is None else f", num_classes: int = {gg['num_classes']}"
    model = [
        f"class {model_name}(nn.Module):",
        *docstring(f"{gg['name']}: {c}x{h}x{w} input -> {returns}.", INDENT),
        "",
        *indented(feature_info(graph, layout), 1),
        "",
        f"{INDENT}def __init__(self{signature}) -> None:",
        *indented(init),
        "",
        f"{INDENT}def _init_weights(self) -> None:",
        *indented(_init_weights(graph, layout)),
        "",
        *indented(forward_methods(graph, layout, entries, head_from), 1),
    ]
    parts.append(_lines(model))
    return "\n\n\n".join(parts) + "\n"


def import_source(source: str, module_name: str) -> types.ModuleType:
    """Run generated source as module `module_name`, registered in sys.modules and linecache so
    that its classes pickle and `inspect.getsource` shows them. The same name is reused when the
    source is the same (the name carries the spec's hash)."""
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__resnet_source__", None) == source:
        return existing
    filename = f"<resnet-compiler:{module_name}>"
    module = types.ModuleType(module_name)
    module.__file__ = filename
    module.__resnet_source__ = source  # type: ignore[attr-defined]
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    code = compile(source, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - generated by emit_torch from validated names
    sys.modules[module_name] = module
    parent, _, child = module_name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


__all__ = ["constructor_params", "emit_torch", "import_source", "model_class_name"]
