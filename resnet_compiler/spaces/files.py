"""The files a design space's commands share: the sampled designs (one spec file each, and
`designs.csv`), and a sweep's `results.csv` and per-design run folders.

    DIR/designs.csv            design, <sampled paths...>, params, macs, flops, acts, widths, depths
    DIR/<name>_0001.yaml ...   each design's resolved spec (extends:, --set and generators applied)
    DIR/results.csv            design, status, error, epochs, seconds       (after `sweep`)
    DIR/runs/<name>_0001/      spec.yaml, metrics.csv, checkpoint.pt, result.json, ...
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from .sample import Design
from .space import TOTALS, Space

DESIGNS_CSV = "designs.csv"
RESULTS_CSV = "results.csv"
RUNS = "runs"
RESULT_COLUMNS = ("design", "status", "error", "epochs", "seconds")
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def csv_text(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_cell(v) for v in row])
    return buf.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_new_folder(out: Path) -> None:
    """Refuse an output folder that exists with files in it, or one that cannot be made."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out}: the folder exists and is not empty; give a new folder")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{out}: cannot write in {parent}: permission denied")


def design_names(space: Space, count: int) -> list[str]:
    width = max(4, len(str(count)))
    return [f"{space.name}_{i + 1:0{width}d}" for i in range(count)]


def design_spec(space: Space, design: Design, name: str, seed: int) -> str:
    """The design's resolved spec as YAML under its own name, its sampled values on top."""
    doc = design.net.document
    assert doc is not None
    data = {"name": name, **{k: v for k, v in doc.data.items() if k != "name"}}
    values = ", ".join(f"{k}={v}" for k, v in design.values.items())
    head = (f"# {name}: sampled from {Path(space.source).name} (seed {seed}): {values}\n"
            f"# {design.totals['flops']:,} flops (pycls), {design.totals['params']:,} params\n")
    # one dump of the whole spec (libyaml's emitter where PyYAML has it): a sample writes
    # hundreds of these, and emitting value by value with origins would cost seconds
    return head + yaml.dump(data, Dumper=_DUMPER, sort_keys=False, default_flow_style=None,
                            width=100, allow_unicode=True)


def write_designs(space: Space, designs: list[Design], out: Path, seed: int) -> None:
    """Every design's spec file and designs.csv, in a temporary folder renamed to `out` once
    complete (so a failed run leaves no folder behind)."""
    names = design_names(space, len(designs))
    columns = ("design", *space.sample, *TOTALS, "widths", "depths")
    rows = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, d in zip(names, designs, strict=True):
            file = f"{name}.yaml"
            (tmp / file).write_text(design_spec(space, d, name, seed))
            rows.append((file, *d.values.values(), *(d.totals[k] for k in TOTALS), d.widths,
                         d.depths))
        (tmp / DESIGNS_CSV).write_text(csv_text(columns, rows))
        os.chmod(tmp, 0o777 & ~_umask())
        if out.is_dir():
            out.rmdir()  # empty (checked before sampling)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_designs(folder: Path) -> list[dict[str, str]]:
    """designs.csv of a sampled folder (UsageError when there is none)."""
    f = folder / DESIGNS_CSV
    if not f.is_file():
        raise UsageError(f"{folder}: no {DESIGNS_CSV}; give a folder written by `resnet-compile "
                         "sample`")
    try:
        rows = read_csv(f)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"{f}: cannot read it: {e}") from None
    if not rows or "design" not in rows[0]:
        raise UsageError(f"{f}: no designs listed (a `design` column of spec file names)")
    for i, row in enumerate(rows, 2):
        name = row.get("design") or ""
        if not name or Path(name).name != name or name.startswith(".") or "\\" in name:
            raise UsageError(f"{f}:{i}: design {name!r} is not the name of a spec file in {folder}")
    return rows


def sampled_columns(rows: list[dict[str, str]]) -> list[str]:
    """The sampled paths among designs.csv's columns (those between `design` and the totals)."""
    cols = list(rows[0]) if rows else []
    return [c for c in cols if c not in ("design", *TOTALS, "widths", "depths")]
