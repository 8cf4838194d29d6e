"""The presets' catalogue: name, parameters, MACs and the peer model each one equals.

Listing every preset must not mean compiling every preset, so the figures are kept in
`presets/index.json`, written by `python -m resnet_compiler.catalog` and checked against a fresh
compile by the test suite; a preset the index does not know is compiled when listed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .language.presets import PRESETS_DIR, list_models, preset_path

INDEX_PATH = PRESETS_DIR / "index.json"


def entry(name: str) -> dict[str, Any]:
    """The catalogue entry of one preset, compiled now."""
    from .compiler import compile as compile_spec
    net = compile_spec(preset_path(name) or name)
    path = preset_path(name)
    return {"name": name, "params": net.total_params, "macs": net.total_macs,
            "gmacs": round(net.total_macs / 1e9, 3), "peer": net.spec.peer,
            "file": path.relative_to(PRESETS_DIR).as_posix() if path else None}


def build_index() -> dict[str, dict[str, Any]]:
    return {name: entry(name) for name in list_models()}


def read_index() -> dict[str, dict[str, Any]]:
    try:
        return json.loads(INDEX_PATH.read_text())
    except (OSError, ValueError):
        return {}


def models(pattern: str = "*") -> list[dict[str, Any]]:
    """The entries of the presets matching a glob, in name order."""
    index = read_index()
    return [index[n] if n in index else entry(n) for n in list_models(pattern)]


def format_table(rows: list[dict[str, Any]]) -> str:
    width = max([len(r["name"]) for r in rows] + [4])
    lines = [f"{'name':<{width}}  {'params':>12}  {'GMACs':>7}  peer"]
    lines += [f"{r['name']:<{width}}  {r['params']:>12,}  {r['gmacs']:>7.3f}  {r['peer'] or '-'}"
              for r in rows]
    return "\n".join(lines) + "\n"


def write_index(path: Path = INDEX_PATH) -> None:
    from .outputs import write_atomic
    write_atomic(str(path), json.dumps(build_index(), indent=1) + "\n")


README_BEGIN = "<!-- preset table: written by python -m resnet_compiler.catalog --readme README.md -->"
README_END = "<!-- end of preset table -->"


def markdown_table(index: dict[str, dict[str, Any]]) -> str:
    """Every preset as a Markdown row: name, the peer it equals, params and GMACs."""
    lines = ["| preset | peer | params | GMACs |", "|---|---|---:|---:|"]
    for name, e in sorted(index.items()):
        peer = f"`{e['peer']}`" if e["peer"] else "-"
        lines.append(f"| `{name}` | {peer} | {e['params']:,} | {e['gmacs']:.3f} |")
    return "\n".join(lines) + "\n"


def readme_with_table(text: str, index: dict[str, dict[str, Any]]) -> str:
    """`text` with the block between the two markers replaced by the table of `index`."""
    head, sep, rest = text.partition(README_BEGIN)
    _, sep_end, tail = rest.partition(README_END)
    if not sep or not sep_end:
        raise ValueError("the README has no preset-table markers")
    return f"{head}{README_BEGIN}\n{markdown_table(index)}{README_END}{tail}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--readme"] and len(sys.argv) == 3:
        from .outputs import write_atomic
        readme = Path(sys.argv[2])
        write_atomic(str(readme), readme_with_table(readme.read_text(), read_index()))
        print(f"wrote the preset table into {readme}", file=sys.stderr)
    else:
        write_index()
        print(f"wrote {INDEX_PATH}", file=sys.stderr)
