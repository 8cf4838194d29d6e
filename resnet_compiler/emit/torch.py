"""PyTorch source emitter: one standalone, readable file that imports only torch.

Each block template becomes a class whose constructor takes the per-instance values (in_channels,
channels, stride and the block's params) and evaluates the template's expressions verbatim, so
the code reads like torchvision's `resnet.py` while staying a pure function of the graph.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import networkx as nx

from ..expr import Expr

INDENT = "    "
WIDTH = 99


def _split_args(text: str) -> list[str]:
    """Split call arguments at top-level commas (the code is ours: no strings with commas)."""
    args, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        args.append(text[start:].strip())
    return args


def _wrap(line: str) -> list[str]:
    """Break an over-long call or def line after its opening parenthesis, black-style."""
    if len(line) <= WIDTH or "(" not in line:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    start = line.index("(")
    depth = 0
    for end in range(start, len(line)):
        depth += {"(": 1, ")": -1}.get(line[end], 0)
        if depth == 0:
            break
    out, current = [line[: start + 1]], indent + INDENT
    for arg in _split_args(line[start + 1: end]):
        piece = arg + ","
        if len(current) + len(piece) > WIDTH and current.strip():
            out.append(current.rstrip())
            current = indent + INDENT
        current += piece + " "
    out += [current.rstrip(), indent + line[end:]]
    return out


def _lines(lines: list[str]) -> str:
    return "\n".join(part for line in lines for part in _wrap(line))


def _docstring(text: str, indent: str) -> list[str]:
    """A docstring that fits the width: one line if it can, else wrapped."""
    one = f'{indent}"""{text}"""'
    if len(one) <= WIDTH:
        return [one]
    body = textwrap.wrap(text, WIDTH - len(indent) - 3)
    return [f'{indent}"""{body[0]}', *[indent + b for b in body[1:]], f'{indent}"""']
_DEFAULTS = {"stride": "1", "padding": "0", "dilation": "1", "groups": "1"}


def _module(op: str, a: dict[str, Any], in_ch: str, inplace: bool) -> str:
    """The constructor call for one op; `a` holds expression sources or plain values."""
    if op == "conv":
        args = [in_ch, a["channels"], f"kernel_size={a['kernel']}"]
        args += [f"{k}={a[k]}" for k in ("stride", "padding", "dilation", "groups")
                 if a[k] != _DEFAULTS[k]]
        return f"nn.Conv2d({', '.join(args)}, bias={a['bias']})"
    if op == "bn":
        args = [in_ch]
        if a["eps"] != 1e-5:
            args.append(f"eps={a['eps']!r}")
        if a["momentum"] != 0.1:
            args.append(f"momentum={a['momentum']!r}")
        return f"nn.BatchNorm2d({', '.join(args)})"
    if op == "relu":
        return "nn.ReLU(inplace=True)" if inplace else "nn.ReLU()"
    if op == "se":
        return f"SqueezeExcite({in_ch}, {a['channels']})"
    if op == "maxpool":
        args = [f"kernel_size={a['kernel']}", f"stride={a['stride']}", f"padding={a['padding']}"]
        if a["ceil_mode"]:
            args.append("ceil_mode=True")
        return f"nn.MaxPool2d({', '.join(args)})"
    if op == "avgpool":
        args = [f"kernel_size={a['kernel']}", f"stride={a['stride']}"]
        if a["padding"] != "0":
            args.append(f"padding={a['padding']}")
        if a["ceil_mode"]:
            args.append("ceil_mode=True")
        if not a["count_include_pad"]:
            args.append("count_include_pad=False")
        return f"nn.AvgPool2d({', '.join(args)})"
    raise ValueError(f"no PyTorch module for op {op!r}")


def _out_channels(op: str, a: dict[str, Any], in_ch: str) -> str:
    return a["channels"] if op == "conv" else in_ch


def _names_in(source: Any) -> set[str]:
    return Expr(source).names if isinstance(source, str) else set()


SE_CLASS = '''
class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al.): pool, 1x1 conv down, ReLU, 1x1 conv up, sigmoid gate."""

    def __init__(self, channels: int, rd_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.fc2(self.act(self.fc1(scale)))
        return x * self.gate(scale)
'''


def _used_names(rec: dict[str, Any]) -> set[str]:
    """Variables the class's expressions read, following vars that use earlier vars."""
    used: set[str] = set(_names_in(rec["out_channels"]))
    for section in ("branch", "post", "projection"):
        for entry in rec[section]:
            for key, value in entry.items():
                if key not in ("name", "op"):
                    used |= _names_in(value)
    for name, src in reversed(rec["vars"]):
        if name in used:
            used |= _names_in(src)
    return used


def _constructor_params(rec: dict[str, Any]) -> dict[str, Any]:
    """Block params that become keyword arguments (those `when` fixed are baked in)."""
    used = _used_names(rec)
    return {k: v for k, v in rec["params"].items() if k in used and k not in rec["fixed"]}


def _block_class(rec: dict[str, Any]) -> str:
    """Source of one block class from its template record."""
    used = _used_names(rec)
    var_sources = dict(rec["vars"])
    params = _constructor_params(rec)
    signature = ["self", "in_channels: int", "channels: int", "stride: int = 1"]
    if params:
        signature.append("*")
        signature += [f"{k}: {type(v).__name__} = {v!r}" for k, v in params.items()]

    body = ["super().__init__()"]
    body += [f"{k} = {v!r}" for k, v in rec["fixed"].items() if k in used]
    body += [f"{k} = {var_sources[k]}" for k, _ in rec["vars"] if k in used]
    body.append(f"out_channels = {rec['out_channels']}")

    # constructor lines and forward lines, tracking each op's input channels symbolically
    forward = []
    ch, source_var, saved_var = "in_channels", "x", None
    projection_in = "in_channels"
    for entry in rec["branch"]:
        inplace = source_var != "x" and source_var != "preact"
        body.append(f"self.{entry['name']} = {_module(entry['op'], entry, ch, inplace)}")
        forward.append(f"out = self.{entry['name']}({source_var})")
        ch = _out_channels(entry["op"], entry, ch)
        source_var = "out"
        if entry["name"] == rec["projection_from"]:
            forward.append("preact = out")
            saved_var, projection_in, source_var = "preact", ch, "preact"
    for entry in rec["post"]:
        body.append(f"self.{entry['name']} = {_module(entry['op'], entry, 'out_channels', True)}")
    proj = []
    pch = projection_in
    for entry in rec["projection"]:
        proj.append(_module(entry["op"], entry, pch, False) + ",")
        pch = _out_channels(entry["op"], entry, pch)
    body.append("if stride != 1 or in_channels != out_channels:")
    body.append(f"{INDENT}self.downsample = nn.Sequential(")
    body += [f"{INDENT * 2}{line}" for line in proj]
    body.append(f"{INDENT})")
    body.append("else:")
    body.append(f"{INDENT}self.downsample = None")

    shortcut_input = saved_var or "x"
    forward.append(f"shortcut = x if self.downsample is None else self.downsample({shortcut_input})")
    forward.append("out = out + shortcut")
    for entry in rec["post"]:
        forward.append(f"out = self.{entry['name']}(out)")
    forward.append("return out")

    lines = [f"class {rec['class_name']}(nn.Module):",
             *_docstring(f"The {rec['kind']!r} block: {_describe(rec)}.", INDENT), ""]
    lines.append(f"{INDENT}def __init__({', '.join(signature)}) -> None:")
    lines += [f"{INDENT * 2}{line}" for line in body]
    lines += ["", f"{INDENT}def forward(self, x: torch.Tensor) -> torch.Tensor:"]
    lines += [f"{INDENT * 2}{line}" for line in forward]
    return _lines(lines)


def _describe(rec: dict[str, Any]) -> str:
    branch = "-".join(e["op"] + (f"{e['kernel']}x{e['kernel']}" if e["op"] == "conv" and
                                  not _names_in(e["kernel"]) else "") for e in rec["branch"])
    post = "-".join(e["op"] for e in rec["post"])
    text = f"{branch} plus a shortcut ({rec['shortcut']} when the shape changes)"
    return text + (f", then {post}" if post else "")


def _concrete(data: dict[str, Any]) -> dict[str, Any]:
    """Graph node attributes in the form `_module` takes (sizes as text)."""
    a = {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
         for k, v in data.items()}
    if data["op"] == "conv":
        a["channels"] = str(data["out_channels"])
    if data["op"] == "se":
        a["channels"] = str(data["rd_channels"])
    return a


_FAMILY_SPELLING = (("seresnext", "SEResNeXt"), ("seresnet", "SEResNet"), ("resnext", "ResNeXt"),
                    ("resnetv2", "ResNetV2"), ("resnet", "ResNet"), ("wide_resnet", "WideResNet"))


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
    while base in taken or base in ("nn", "torch", "I", "O"):  # I, O: ambiguous names (E742)
        base += "Model"
    return base


def _top_level(entries: list[tuple[str, str]], init: list[str], forward: list[str]) -> None:
    """Lines for stem or head modules; `group.index` names become one nn.Sequential `group`."""
    i = 0
    while i < len(entries):
        name, module = entries[i]
        group, _, index = name.partition(".")
        if not index:
            init.append(f"self.{name} = {module}")
            forward.append(f"x = self.{name}(x)")
            i += 1
            continue
        init.append(f"self.{group} = nn.Sequential(")
        while i < len(entries) and entries[i][0].partition(".")[0] == group \
                and entries[i][0].partition(".")[2]:
            init.append(f"{INDENT}{entries[i][1]},")
            i += 1
        init.append(")")
        forward.append(f"x = self.{group}(x)")


def model_class_name(graph: nx.DiGraph) -> str:
    """The generated model class's name, derived from the spec name."""
    return _class_name(graph.graph["name"], set(graph.graph["classes"]) | {"SqueezeExcite"})


def emit_torch(graph: nx.DiGraph) -> str:
    """The PyTorch source for `graph`: deterministic, ruff-clean, torch-only."""
    gg = graph.graph
    nodes = graph.nodes
    classes = gg["classes"]
    uses_se = any(d["op"] == "se" for _, d in graph.nodes(data=True))
    model_name = model_class_name(graph)
    c, h, w = gg["input_shape"]
    header = [
        f'"""{gg["name"]}: a residual network generated by resnet-compiler {gg["compiler_version"]}.',
        "",
        f"Input {c}x{h}x{w}, {gg['num_classes']} classes, {gg['total_params']:,} parameters,"
        f" {gg['total_macs'] / 1e9:.3f} GMACs.",
        f"Spec sha256: {gg['spec_sha256']}.",
        "Regenerate rather than edit: resnet-compile SPEC --emit torch -o FILE",
        '"""',
        "",
        "import torch",
        "from torch import nn",
    ]
    parts = ["\n".join(header)]
    if uses_se:
        parts.append(SE_CLASS.strip("\n"))
    parts += [_block_class(rec) for rec in classes.values()]

    layout = gg["layout"]
    init = ["super().__init__()"]
    forward = []
    stem = []
    for i, node_id in enumerate(layout["stem"]):
        d = nodes[node_id]
        in_ch = str(graph.nodes[next(iter(graph.predecessors(node_id)))]["shape"][0])
        stem.append((node_id, _module(d["op"], _concrete(d), in_ch, inplace=i > 0)))
    _top_level(stem, init, forward)
    signature = {name: _constructor_params(rec) for name, rec in classes.items()}
    for stage in layout["stages"]:
        init.append(f"self.{stage['name']} = nn.Sequential(")
        for inst in stage["blocks"]:
            rec = classes[inst["class"]]
            args = [str(inst["in_channels"]), str(inst["channels"])]
            if inst["stride"] != 1:
                args.append(f"stride={inst['stride']}")
            args += [f"{k}={inst['params'][k]!r}" for k in signature[inst["class"]]
                     if inst["params"][k] != rec["params"][k]]
            init.append(f"{INDENT}{inst['class']}({', '.join(args)}),")
        init.append(")")
        forward.append(f"x = self.{stage['name']}(x)")
    head = []
    for node_id in layout["head"]:
        d = nodes[node_id]
        in_shape = graph.nodes[next(iter(graph.predecessors(node_id)))]["shape"]
        op = d["op"]
        if op == "global_pool":
            module = f"nn.Adaptive{'Avg' if d['mode'] == 'avg' else 'Max'}Pool2d(1)"
        elif op == "flatten":
            module = "nn.Flatten(1)"
        elif op == "dropout":
            module = f"nn.Dropout(p={d['p']!r})"
        elif op == "linear":
            module = f"nn.Linear({in_shape[0]}, num_classes)"
        else:
            module = _module(op, _concrete(d), str(in_shape[0]), True)
        head.append((node_id, module))
    _top_level(head, init, forward)
    init.append("self._init_weights()")
    forward.append("return x")

    weights = [
        "for m in self.modules():",
        f"{INDENT}if isinstance(m, nn.Conv2d):",
        f'{INDENT * 2}nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")',
        f"{INDENT}elif isinstance(m, nn.BatchNorm2d):",
        f"{INDENT * 2}nn.init.ones_(m.weight)",
        f"{INDENT * 2}nn.init.zeros_(m.bias)",
    ]
    if gg["zero_init_last_bn"]:
        by_bn: dict[str, list[str]] = {}
        for name, rec in classes.items():
            if rec["last_bn"]:
                by_bn.setdefault(rec["last_bn"], []).append(name)
        if by_bn:
            weights.append("# start each residual branch at zero so every block begins as identity")
            weights.append("for m in self.modules():")
            for i, (bn, names) in enumerate(by_bn.items()):
                kinds = names[0] if len(names) == 1 else f"({', '.join(names)})"
                weights.append(f"{INDENT}{'if' if i == 0 else 'elif'} isinstance(m, {kinds}):")
                weights.append(f"{INDENT * 2}nn.init.zeros_(m.{bn}.weight)")

    model = [
        f"class {model_name}(nn.Module):",
        f'{INDENT}"""{gg["name"]}: {c}x{h}x{w} input -> {gg["num_classes"]} logits."""',
        "",
        f"{INDENT}def __init__(self, num_classes: int = {gg['num_classes']}) -> None:",
        *[f"{INDENT * 2}{line}" for line in init],
        "",
        f"{INDENT}def _init_weights(self) -> None:",
        *[f"{INDENT * 2}{line}" for line in weights],
        "",
        f"{INDENT}def forward(self, x: torch.Tensor) -> torch.Tensor:",
        *[f"{INDENT * 2}{line}" for line in forward],
    ]
    parts.append(_lines(model))
    return "\n\n\n".join(parts) + "\n"
