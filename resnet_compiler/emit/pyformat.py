"""Line breaking for the generated Python, as black and `ruff format` (default settings: 88
columns, magic trailing commas) break lines, so that a generated file pasted into a project is
left unchanged by its formatter.

Only the shapes of statement the emitters write are handled: calls and definitions split after
their last opening bracket (the arguments on one line when they fit, else one per line with a
trailing comma), assignments of conditional expressions wrapped in parentheses, and long `if`
conditions. The code is ours, so brackets never occur inside strings.
"""

from __future__ import annotations

from collections.abc import Iterable

WIDTH = 88
INDENT = "    "
OPEN, CLOSE = "([{", ")]}"


def _pairs(text: str) -> list[tuple[int, int]]:
    """The top-level bracket pairs of `text`, as (opening, closing) indices."""
    pairs, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in OPEN:
            if depth == 0:
                start = i
            depth += 1
        elif ch in CLOSE:
            depth -= 1
            if depth == 0:
                pairs.append((start, i))
    return pairs


def split_top(text: str, sep: str = ",") -> list[str]:
    """`text` split at top-level occurrences of `sep`, pieces stripped, empty ones dropped."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in OPEN:
            depth += 1
        elif ch in CLOSE:
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            out.append(text[start:i].strip())
            start = i + len(sep)
            i += len(sep)
            continue
        i += 1
    out.append(text[start:].strip())
    return [piece for piece in out if piece]


def _ternary(text: str) -> list[str] | None:
    """A top-level conditional expression `a if c else b` as its three parts, else None."""
    parts = split_top(f" {text} ", " if ")
    if len(parts) != 2:
        return None
    rest = split_top(f" {parts[1]} ", " else ")
    if len(rest) != 2:
        return None
    return [parts[0], f"if {rest[0]}", f"else {rest[1]}"]


# Binary operators by priority, highest first: inside brackets, a line too long is split before
# every top-level occurrence of the highest-priority one it has (black's delimiter split).
DELIMITERS = ((" or ",), (" and ",), (" < ", " > ", " == ", " != ", " <= ", " >= ", " in ",
                                      " is "),
              (" | ",), (" ^ ",), (" & ",), (" << ", " >> "), (" + ", " - "),
              (" * ", " / ", " // ", " % "))


def _delimiter_split(indent: str, body: str) -> list[str] | None:
    """`body` (an element inside brackets, perhaps ending in a comma) split before its top-level
    operators of the highest priority present, or None when it has none."""
    trailing = "," if body.endswith(",") else ""
    expr = body.removesuffix(",")
    target, eq, value = expr.partition("=")
    if eq and target.isidentifier() and not value.startswith("="):  # a keyword argument
        prefix, expr = f"{target}=", value
    else:
        prefix = ""
    for group in DELIMITERS:
        cuts: list[tuple[int, str]] = []
        depth = 0
        for i, ch in enumerate(expr):
            if ch in OPEN:
                depth += 1
            elif ch in CLOSE:
                depth -= 1
            elif depth == 0 and ch == " ":
                op = next((d for d in group if expr.startswith(d, i)), None)
                if op is not None:
                    cuts.append((i, op))
        if cuts:
            pieces, start = [], 0
            for i, _ in cuts:
                pieces.append(expr[start:i].strip())
                start = i + 1
            pieces.append(expr[start:].strip())
            lines = [indent + prefix + pieces[0], *(indent + p for p in pieces[1:])]
            lines[-1] += trailing
            return [part for line in lines for part in format_line(line, inside=True)]
    return None


def format_line(line: str, inside: bool = False) -> list[str]:
    """`line` as the formatter would write it: unchanged when it fits. `inside`: the line is an
    element inside brackets (split at its operators before its last brackets)."""
    if len(line) <= WIDTH:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    body = line.strip()
    inner = indent + INDENT
    if inside and _ternary(body.removesuffix(",")) is None:
        split = _delimiter_split(indent, body)
        if split is not None:
            return split
    if body.startswith(("if ", "elif ")) and body.endswith(":"):
        keyword, _, condition = body[:-1].partition(" ")
        return [f"{indent}{keyword} (", *format_line(inner + condition), f"{indent}):"]
    target, eq, value = body.partition(" = ")
    if eq and " " not in target and _ternary(value) is not None:
        return [f"{indent}{target} = (", *_block(inner, value), f"{indent})"]
    if _ternary(body.rstrip(",")) is not None and not eq:
        return _block(indent, body)
    pairs = _pairs(line)
    while pairs and pairs[-1][1] - pairs[-1][0] == 1:  # `()`: nothing to break inside
        pairs.pop()
    if not pairs:
        return [line]
    start, end = pairs[-1]
    head, args, tail = line[: start + 1], line[start + 1: end], line[end:]
    one = inner + args.strip()
    if len(one) <= WIDTH and not args.rstrip().endswith(","):
        return [head, one, indent + tail]
    items = split_top(args)
    if len(items) == 1 and not args.rstrip().endswith(","):
        # one argument: broken in its own brackets, without a trailing comma of its own
        return [head, *format_line(one, inside=True), indent + tail]
    lines = [head]
    for item in items:
        lines += format_line(f"{inner}{item},", inside=True)
    return [*lines, indent + tail]


def _block(indent: str, text: str) -> list[str]:
    """A conditional expression at `indent`: on one line if it fits, else one part per line."""
    trailing = "," if text.endswith(",") else ""
    expr = text.rstrip(",")
    if len(indent + text) <= WIDTH:
        return [indent + text]
    parts = _ternary(expr) or [expr]
    out = [line for part in parts for line in _logic(indent, part)]
    out[-1] += trailing
    return out


def _logic(indent: str, part: str) -> list[str]:
    """One part of a broken conditional expression; a long one broken before its top-level
    `and`s (or `or`s), as the formatter splits at the delimiter of the highest priority."""
    if len(indent + part) <= WIDTH:
        return [indent + part]
    for op in (" or ", " and "):
        pieces = split_top(f" {part} ", op)
        if len(pieces) > 1:
            return [indent + pieces[0], *(f"{indent}{op.strip()} {p}" for p in pieces[1:])]
    return format_line(indent + part)


def format_lines(lines: Iterable[str]) -> str:
    return "\n".join(part for line in lines for part in format_line(line))
