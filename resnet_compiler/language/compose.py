"""The spec a file means: its `extends:` chain merged, its `use:` libraries added, and overrides
(`--set`, `compile(overrides=...)`) applied, before anything is validated.

Everything downstream (validation, channels, shapes, feature_info) sees only the merged data, so
no value derived from a base can go stale; every value keeps the file and line it came from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .load import Document, load_file, load_text
from .merge import Layers
from .presets import locate, looks_like_name, suggest

EXTENDS, USE, REGNET = "extends", "use", "regnet"
LIBRARY_KEYS = ("blocks", "modules", "shortcuts")
# keys that describe the file that writes them, not the network a child builds on it
NOT_INHERITED = ("peer",)
MAX_CHAIN = 32

Overrides = Mapping[str, Any] | Sequence[str] | None


def resolve(spec: str | os.PathLike[str] | Mapping[str, Any], overrides: Overrides = None) -> Document:
    """The merged spec of a file path, a preset name or plain data, with `overrides` applied
    (a mapping of dotted paths to values, or `path=value` strings whose values are YAML). The
    Document may be the one every compile of the file shares: read it, do not change it."""
    if isinstance(spec, Mapping):
        doc = Document(dict(spec), "<dict>")
        layers = _resolve(doc, Path.cwd(), ())
    else:
        doc, layers = _resolve_file(_spec_path(str(spec)), ())
    _not_a_library(doc)
    pairs = _override_pairs(overrides)
    if layers is None and not pairs:
        return _finished(_space_base(doc))
    if layers is None:
        layers = Layers(doc)
    for dotted, value, source in pairs:
        layers.set(tuple(dotted.split(".")), value, source)
    return _finished(_space_base(layers.document()))


LIBRARY_KEYS = frozenset({"blocks", "modules", "shortcuts", "use"})
SPACE = "space"


def _space_base(doc: Document) -> Document:
    """A design space compiled as a network is its base spec: the `space:` section is checked
    as `sample` checks it, then left out (so `--check` and `--verify` show what it varies)."""
    if not isinstance(doc.data, dict) or SPACE not in doc.data:
        return doc
    if doc.source.startswith("<"):
        raise doc.error((SPACE,), "a design space is read from its file: resnet-compile sample"
                        " SPACE samples it")
    from ..spaces.space import load_space
    load_space(doc.source)
    data = {k: v for k, v in doc.data.items() if k != SPACE}
    return Document(data, doc.source, doc.lines, doc.sources, doc.libraries)


def _not_a_library(doc: Document) -> None:
    """A file of blocks, modules and shortcuts alone is a library: say so, rather than list the
    network keys it lacks."""
    if isinstance(doc.data, dict) and doc.data and set(doc.data) <= LIBRARY_KEYS:
        raise SpecError.single("", "this file is a library (blocks:, modules:, shortcuts:), not a"
                               " network: a spec uses it with `use: [file]`", doc.source)


def resolve_document(doc: Document, folder: Path, overrides: Overrides = None,
                     generate: bool = True) -> Document:
    """`resolve` for a spec already loaded (a design space's spec part, the file's `space:`
    left out): extends: and use: relative to `folder`, then `overrides`. `generate=False` stops
    before generators run, so a space can still set a `regnet:` section's values."""
    layers = _resolve(doc, folder, (Path(doc.source),))
    pairs = _override_pairs(overrides)
    if layers is None and not pairs:
        return _finished(doc) if generate else doc
    if layers is None:
        layers = Layers(doc)
    for dotted, value, source in pairs:
        layers.set(tuple(dotted.split(".")), value, source)
    return _finished(layers.document()) if generate else layers.document()


def _finished(doc: Document) -> Document:
    """The last steps, on the final values: a regnet: section generates its stages, and
    defaults.aa reaches the stem."""
    from .stem_aa import anti_aliased_stem
    if isinstance(doc.data, dict) and REGNET in doc.data:
        doc = _generated(doc)
    return anti_aliased_stem(doc)


def _generated(doc: Document) -> Document:
    """A spec with a `regnet:` section: the stem, stages and head it generates, with the rest of
    the spec laid over them (so a spec may still patch a generated stage or replace the head)."""
    from .regnet import expand_section, section_problems
    section = doc.data[REGNET]
    problems = section_problems(section)
    if problems:
        raise SpecError([doc.problem((REGNET, *path), message) for path, message in problems],
                        doc.source)
    where = (REGNET,)
    generated = Document(expand_section(section), doc.source_of(where),
                         {(): doc.line_of(where) or 0})
    layers = Layers(generated)
    rest = {k: v for k, v in doc.data.items() if k != REGNET}
    layers.apply(Document(rest, doc.source, doc.lines, doc.sources or {(): doc.source}))
    layers.source = doc.source
    return layers.document()


def _spec_path(text: str) -> Path:
    found = locate(text)
    if found is not None:
        return found
    if looks_like_name(text):
        raise SpecError.single("", "no such spec file, and no preset of that name"
                               + suggest(text), text)
    return Path(text)  # load_file says what is wrong with it


def _resolve_file(path: Path, chain: tuple[Path, ...]) -> tuple[Document, Layers | None]:
    """A spec file and its layers, None when it neither extends nor uses anything (then the
    file's own Document is the spec)."""
    doc = load_file(path)
    return doc, _resolve(doc, path.parent, (*chain, path))


def _resolve(doc: Document, folder: Path, chain: tuple[Path, ...]) -> Layers | None:
    data = doc.data
    if not isinstance(data, dict) or (EXTENDS not in data and USE not in data):
        return None
    own = Document({k: v for k, v in data.items() if k not in (EXTENDS, USE)}, doc.source,
                   doc.lines)
    layers = None
    if EXTENDS in data:
        base = _base_path(doc, folder, chain)
        base_doc, layers = _resolve_file(base, chain)
        layers = layers or Layers(base_doc)
        for key in NOT_INHERITED:
            layers.drop(key)
    for library in _libraries(doc, folder):
        if layers is None:
            layers = Layers(library)
        else:
            layers.apply(library)
        layers.libraries.append(_shown(Path(library.source)))
    if layers is None:
        return Layers(own)
    layers.apply(own)
    return layers


def _base_path(doc: Document, folder: Path, chain: tuple[Path, ...]) -> Path:
    name = doc.data[EXTENDS]
    if not isinstance(name, str) or not name:
        raise doc.error((EXTENDS,), "must name one spec: a file path (relative to this spec) or a"
                                    f" preset name (got {name!r})")
    found = locate(name, folder)
    if found is None:
        if looks_like_name(name):
            raise doc.error((EXTENDS,), f"no spec file {name!r} beside this spec, and no preset "
                                        f"of that name{suggest(name)}")
        raise doc.error((EXTENDS,), f"no such file {name} (looked for {folder / name})")
    seen = [os.path.realpath(p) for p in chain]
    real = os.path.realpath(found)
    if real in seen:
        loop = [*chain[seen.index(real):], found]
        raise doc.error((EXTENDS,), "makes a cycle: " + " -> ".join(_shown(p) for p in loop))
    if len(chain) >= MAX_CHAIN:
        raise doc.error((EXTENDS,), f"more than {MAX_CHAIN} levels of extends:")
    return found


def _shown(path: Path) -> str:
    """A path as short as it can be shown: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _libraries(doc: Document, folder: Path) -> list[Document]:
    """The `use:` libraries of a spec, each a Document of blocks, modules and shortcuts; a name
    two of them define is an error naming both files."""
    names = doc.data.get(USE)
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise doc.error((USE,), "must be a list of library files (relative to this spec) or "
                                "built-in library names")
    out: list[Document] = []
    defined: dict[tuple[str, str], str] = {}
    for i, name in enumerate(names):
        library = _library(doc, (USE, i), name, folder)
        if library is None:
            continue
        for kind in LIBRARY_KEYS:
            for item in library.data.get(kind) or {}:
                first = defined.setdefault((kind, item), library.source)
                if first != library.source:
                    raise doc.error((USE, i), f"{kind[:-1]} {item!r} is defined by both {first}"
                                              f" and {library.source}; use one of them")
        out.append(library)
    return out


def _library(doc: Document, at: tuple[str, int], name: str, folder: Path) -> Document | None:
    from .library import builtin_library_names
    path = folder / name
    if not path.exists() and looks_like_name(name):
        if name in builtin_library_names():
            return None  # the built-in libraries are always in scope; naming one is a check
        hint = suggest_library(name)
        raise doc.error(at, f"no library file {name!r} beside this spec, and no built-in library"
                            f" of that name (built in: {', '.join(builtin_library_names())}){hint}")
    if not path.is_file():
        raise doc.error(at, f"no such library file {name} (looked for {path})")
    library = load_file(path)
    data = library.data
    if not isinstance(data, dict):
        raise library.error((), "a library is a mapping of blocks:, modules: and shortcuts:")
    for key in data:
        if key not in LIBRARY_KEYS:
            raise library.error((key,), f"a library holds only {', '.join(LIBRARY_KEYS)}; "
                                        f"{key!r} belongs in a spec")
        if not isinstance(data[key], dict):
            raise library.error((key,), "must be a mapping of names to definitions")
    return library


def suggest_library(name: str) -> str:
    import difflib

    from .library import builtin_library_names
    close = difflib.get_close_matches(name, builtin_library_names(), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _override_pairs(overrides: Overrides) -> list[tuple[str, Any, str]]:
    """(dotted path, value, origin) of each override."""
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        return [(_dotted(str(k), "overrides"), v, "overrides") for k, v in overrides.items()]
    out = []
    for item in overrides:
        key, sep, text = str(item).partition("=")
        if not sep:
            raise SpecError.single("", f"--set {item}: give PATH=VALUE, e.g. stages.2.depth=23",
                                   "--set")
        value = load_text(text, f"--set {key}").data if text.strip() else ""
        out.append((_dotted(key.strip(), "--set"), value, "--set"))
    return out


def _dotted(key: str, source: str) -> str:
    if not key or any(not part for part in key.split(".")):
        raise SpecError.single("", f"{key!r} is not a dotted path such as stages.2.depth", source)
    return key


