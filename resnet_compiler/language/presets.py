"""The presets that ship in the package, found by name from any directory.

A preset is a YAML file under `resnet_compiler/presets/` (the repository's `spec/`) whose name does
not start with `_`; files and folders starting with `_` are the bases and libraries presets
extend and use. Names are file names without `.yaml`, unique across the folders, except in a
namespace folder: its presets are named `<folder>/<file>` (`torchvision/resnet50`), because they
repeat timm's names with another peer's module layout.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
NAMESPACES = ("torchvision",)


@lru_cache(maxsize=1)
def preset_paths() -> dict[str, Path]:
    """name -> file of every preset, in name order."""
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(PRESETS_DIR):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        prefix = _namespace_of(Path(folder))
        for f in sorted(files):
            if f.endswith(".yaml") and not f.startswith(("_", ".")):
                found.setdefault(prefix + f[: -len(".yaml")], Path(folder) / f)
    return dict(sorted(found.items()))


def _namespace_of(folder: Path) -> str:
    """`torchvision/` for a file under presets/torchvision/, else ''."""
    parts = folder.relative_to(PRESETS_DIR).parts
    return f"{parts[0]}/" if parts and parts[0] in NAMESPACES else ""


def list_models(pattern: str = "*") -> list[str]:
    """The names of the presets that match a shell-style glob (`resnest*`), sorted, as timm's
    `list_models` gives them."""
    import fnmatch
    return [n for n in preset_paths() if fnmatch.fnmatchcase(n, pattern)]


@lru_cache(maxsize=1)
def _folders() -> tuple[Path, ...]:
    """The preset folders, in the order preset_paths walks them."""
    out = [PRESETS_DIR]
    for folder, dirs, _ in os.walk(PRESETS_DIR):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", "."))
                         and not (Path(folder) == PRESETS_DIR and d in NAMESPACES))
        out += [Path(folder) / d for d in dirs]
    return tuple(out)


def _split_namespace(name: str) -> tuple[str, str] | None:
    """('torchvision', 'resnet50') for 'torchvision/resnet50'; None for a name without one."""
    space, sep, rest = name.partition("/")
    if sep and space in NAMESPACES and rest and "/" not in rest and os.sep not in rest:
        return space, rest
    return None


def preset_path(name: str) -> Path | None:
    """The file of preset `name`, or None: a stat per folder, not a walk over every preset
    (an extends: chain looks names up on every compile)."""
    spaced = _split_namespace(name)
    if spaced:
        space, rest = spaced
        candidate = PRESETS_DIR / space / f"{rest}.yaml"
        return candidate if not rest.startswith(("_", ".")) and candidate.is_file() else None
    if not name or name.startswith(("_", ".")) or "/" in name or os.sep in name:
        return None
    for folder in _folders():
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


def looks_like_name(text: str) -> bool:
    """Whether `text` could be a preset name rather than a path (no folder but a namespace, no
    spec suffix)."""
    if not text or text.endswith(SPEC_SUFFIXES):
        return False
    return _split_namespace(text) is not None or (os.sep not in text and "/" not in text)


def suggest(name: str) -> str:
    """`; did you mean 'x'?` over the preset names, or ''."""
    import difflib
    close = difflib.get_close_matches(name, list(preset_paths()), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def locate(text: str, base_dir: Path | None = None) -> Path | None:
    """What a spec argument names: a file that exists (relative to `base_dir`, or the working
    folder) wins over a preset of the same name; then a preset; None when neither exists."""
    candidate = Path(text) if base_dir is None or os.path.isabs(text) else base_dir / text
    if candidate.exists():  # a FIFO or /dev/stdin too: the loader reads streams with a limit
        return candidate
    if looks_like_name(text):
        return preset_path(text)
    return None
