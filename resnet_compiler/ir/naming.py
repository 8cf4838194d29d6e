"""Module paths and names: explicit names, `<op><k>` for the others, each path claimed once.

A part of the expander (ir/expand.py), which mixes the parts together."""

from __future__ import annotations

from typing import Any

from .templates import Origin


class Naming:
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

    def place(self, path: str, origin: Origin) -> str:
        """Claim a module path: a plain name once; a dotted path's containers only by consecutive
        modules, each container's children unique, indices from 0 in order."""
        parts = path.split(".")
        if len(parts) > 1 and parts[0] != self.open_group and parts[0] in self.children:
            raise self.error(origin, f"{path!r}: the modules under {parts[0]!r} must be"
                             " consecutive")
        if len(parts) == 1 or parts[0] != self.open_group:
            self.claim_top(parts[0], origin)
        self.open_group = parts[0] if len(parts) > 1 else None
        for depth in range(1, len(parts)):
            container, key = ".".join(parts[:depth]), parts[depth]
            kids = self.children.setdefault(container, [])
            if kids and kids[-1] == key and depth < len(parts) - 1:
                continue
            if key in kids:
                raise self.error(origin, f"{path!r}: the modules under {container!r} must be"
                                 " consecutive, each name once")
            if kids and kids[0].isdigit() != key.isdigit():
                raise self.error(origin, f"{path!r}: the modules under {container!r} are either"
                                 " all numbered or all named")
            if key.isdigit() and int(key) != len(kids):
                raise self.error(origin, f"{path!r}: the modules under {container!r} must be "
                                 f"numbered from 0 in order ({container}.{len(kids)} expected)")
            kids.append(key)
        return path

    def claim_top(self, name: str, origin: Origin) -> str:
        if name in self.top_names:
            raise self.error(origin, f"name {name!r} is used twice at the top level of the model")
        self.top_names.add(name)
        return name
