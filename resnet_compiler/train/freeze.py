"""Freezing parts of a network and keeping norm layers in eval mode while fine-tuning.

Names come from the compiled network, not from module conventions: `stem` is every module before
the first stage, each stage answers to its name (`layer1`, `stages.0.blocks`), and every
top-level module to its own (`conv1`, `fc`, `head`). A frozen parameter has requires_grad False
and is left out of the optimizer, so neither weight decay nor momentum can move it; the norm layers
inside frozen parts run in eval mode too, so their running statistics stay as loaded (as timm's
`freeze` does by swapping in frozen BatchNorm). `norm_eval` puts every norm layer in eval mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..ops import REGISTRY

if TYPE_CHECKING:
    import torch


def freeze_targets(net: Any) -> dict[str, tuple[str, ...]]:
    """Name -> module paths it covers: `stem`, each stage, each top-level module (a CompiledNetwork)."""
    targets: dict[str, tuple[str, ...]] = {"stem": tuple(op.node_id for op in net.layout.stem)}
    for stage in net.layout.stages:
        targets[stage.name] = (stage.name,)
    for node in net.graph.nodes:
        top = node.split(".")[0]
        if node != "input" and top not in targets:
            targets[top] = (top,)
    return targets


def _covered(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Set requires_grad False on every parameter under `prefixes`; returns their names."""
    frozen = []
    for name, p in model.named_parameters():
        if _covered(name, prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def norm_modules(model: torch.nn.Module, graph: Any, prefixes: tuple[str, ...] | None = None
                 ) -> list[torch.nn.Module]:
    """The modules of the graph's norm nodes (under `prefixes` when given), to keep in eval mode."""
    found = []
    for node, data in graph.nodes(data=True):
        if REGISTRY[data["op"]].role != "norm" or (prefixes is not None and not _covered(node, prefixes)):
            continue
        try:
            found.append(model.get_submodule(node))
        except AttributeError:  # a norm lowered without a module of its own
            continue
    return found
