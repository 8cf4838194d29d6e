"""Every preset that names a peer model, against that model (`pytest -m zoo`, which `.ci/run`
runs after the main suite): up to 150M parameters numerically (parameter count, strict load of
the peer's state_dict, torch within 1e-5 and onnxruntime within 1e-4, or no further from the
peer in float64 than the peer's own fp32 forward is); above it by structure (parameter count,
state_dict names and shapes, both built on the meta device)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from support import assert_computes_like, on_meta, realistic_bn

import resnet_compiler as rc
from resnet_compiler.catalog import INDEX_PATH

NUMERIC_LIMIT = 150_000_000
INDEX = json.loads(INDEX_PATH.read_text())
PEERED = sorted(n for n, e in INDEX.items() if (e["peer"] or "").startswith(("timm:", "torchvision:")))

pytestmark = pytest.mark.zoo


def _literal(node: ast.expr) -> object:
    """A keyword value of a peer call: a literal, `dict(...)` of literals, or FrozenBatchNorm2d."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Name) and node.id == "FrozenBatchNorm2d":
        from torchvision.ops.misc import FrozenBatchNorm2d
        return FrozenBatchNorm2d
    return ast.literal_eval(node)


def peer_of(peer: str) -> torch.nn.Module:
    """The model a `peer:` string names, e.g. `timm:resnet50(act_layer='silu')`, fresh."""
    library, _, call = peer.partition(":")
    expr = ast.parse(call, mode="eval").body
    name, kwargs = (expr.func.id, {k.arg: _literal(k.value) for k in expr.keywords}) \
        if isinstance(expr, ast.Call) else (expr.id, {})
    if library == "timm":
        import timm
        return timm.create_model(name, **kwargs)
    import torchvision
    return getattr(torchvision.models, name)(weights=None, **kwargs)


def _state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", PEERED)
def test_preset_equals_its_peer(tmp_path: Path, name: str) -> None:
    net = rc.compile(name)
    peer_text = net.spec.peer
    if net.total_params > NUMERIC_LIMIT:
        with torch.device("meta"):
            model = net.build_torch()
        peer = on_meta(lambda: peer_of(peer_text))
        assert _state_shapes(model) == _state_shapes(peer)
        assert net.total_params == sum(p.numel() for p in peer.parameters())
        return
    torch.manual_seed(0)
    peer = realistic_bn(peer_of(peer_text)).eval()
    with torch.no_grad():  # GroupNorm affines too, so a misplaced one shows
        for m in peer.modules():
            if isinstance(m, torch.nn.GroupNorm) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    assert net.total_params == sum(p.numel() for p in peer.parameters())
    assert_computes_like(net, peer, tmp_path)


def test_every_peer_is_covered() -> None:
    """Each preset that names a peer library is in this module; the rest name none."""
    unpeered = sorted(set(INDEX) - set(PEERED))
    assert unpeered == ["resnet18_fashion_mnist", "resnet20_cifar"]
    assert len(PEERED) >= 185
