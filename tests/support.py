"""Shared helpers for the tests: realistic BatchNorm statistics, shape hooks, CLI runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "spec").glob("*.yaml"))
# the example specs (design spaces in examples/spaces/ are spaces, not networks)
EXAMPLE_SPECS = sorted(p for p in (ROOT / "examples").rglob("*.yaml")
                       if p.parent.name != "spaces")

# name: (parameters, GMACs as torchvision publishes them)
TORCHVISION = {
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
    "resnext50_32x4d": (25_028_904, 4.23),
    "resnext101_32x8d": (88_791_336, 16.414),
    "wide_resnet50_2": (68_883_240, 11.398),
}
TIMM = ("resnet50d", "seresnet50", "resnetv2_50")

# a small network with most op families: std conv, group norm, gelu, blur pool, max pool, SE with
# hardswish, ECA with mish, ResNet-D shortcut, an anti-aliased elu block (ONNX opsets and dtypes)
MIX = {
    "name": "opset_mix",
    "input": {"channels": 3, "height": 32, "width": 32},
    "num_classes": 10,
    "defaults": {"shortcut": "avgpool_conv_bn"},
    "stem": [
        {"op": "std_conv", "name": "conv1", "channels": 16, "kernel": 3},
        {"op": "gn", "name": "gn1", "groups": 4},
        {"op": "act", "name": "act1", "fn": "gelu"},
        {"op": "blurpool", "name": "pool", "stride": 2},
        {"op": "maxpool", "name": "maxpool", "kernel": 3, "stride": 1, "padding": 1},
    ],
    "stages": [
        {"block": "basic", "depth": 1, "channels": 16, "act": "hardswish", "se": True},
        {"block": "bottleneck", "depth": 1, "channels": 16, "stride": 2, "act": "mish",
         "attn": {"op": "eca", "kernel": 3}, "se": True},
        {"block": "basic", "depth": 1, "channels": 32, "stride": 2, "act": {"op": "act", "fn": "elu"},
         "aa": "avg"},
    ],
    "head": {"pool": "avg"},
}


def realistic_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so eval-mode activations stay finite and comparisons
    mean something (fresh statistics are identity and activations grow layer by layer)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=g) * 0.4 + 0.3)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    return float((a - b).abs().max() / max(1.0, float(a.abs().max())))


def module_shapes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape (without batch) of every named module on input `x`."""
    seen: dict[str, tuple[int, ...]] = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, n=n: seen.__setitem__(n, tuple(o.shape[1:])))
               for n, m in model.named_modules() if n]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def run_cli(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """The real console script, in a fresh process."""
    exe = Path(sys.executable).with_name("resnet-compile")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


def one_line(source: str) -> str:
    """Generated source with the formatter's line breaks undone (`f(\n    a, b,\n)` -> `f(a, b)`),
    so tests can look for a call whatever its width."""
    import re
    text = " ".join(source.split())
    text = re.sub(r"([(\[]) ", r"\1", text)
    return re.sub(r",? ([)\]])", r"\1", text)


def flat_spec(path: Path | str) -> dict:
    """A preset as plain data with its `extends:` and `use:` resolved, a copy of its own (what
    tests edit; loaded files are shared by every compile in the process)."""
    import copy

    from resnet_compiler.language.compose import resolve
    return copy.deepcopy(resolve(str(path)).data)


def flat_text(path: Path | str) -> str:
    """A preset written out flat, as `--emit spec` writes it."""
    import resnet_compiler as rc
    return rc.compile(path).to_spec_yaml()


def torch_and_onnx(net, tmp_path: Path, seed: int = 1):
    """The generated model (eval, seeded weights), its outputs on a seeded batch of two, and
    onnxruntime's on the same batch from the ONNX file written with those weights (its path)."""
    import onnxruntime as ort
    torch.manual_seed(0)
    model = net.build_torch().eval()
    path = tmp_path / "m.onnx"
    net.to_onnx(path, weights=model.state_dict())
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    return model, want, got, path


def assert_computes_like(net, peer: torch.nn.Module, tmp_path: Path, size: int = 64) -> None:
    """The compiled network with the peer's state_dict (strict) computes the peer's outputs:
    torch within 1e-5, and its any-size ONNX file in onnxruntime within 1e-4. Where fp32 rounding
    of a very deep network alone exceeds 1e-4, the peer in float64 decides: onnxruntime must be
    no further from it than the peer's own fp32 forward is (within a factor 2)."""
    import onnxruntime as ort
    model = net.build_torch().eval()
    model.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = peer(x)
        assert rel_err(want, model(x)) <= 1e-5
    del model
    path = tmp_path / "m.onnx"
    net.to_onnx(path, weights=peer.state_dict(), dynamic_hw=True)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy()})[0]
    path.unlink()
    if rel_err(want, got) > 1e-4:
        with torch.no_grad():
            exact = peer.double()(x.double())
        peer.float()
        assert rel_err(exact, got) <= 2 * rel_err(exact, want), "onnxruntime against float64"


def assert_timm_structure(name: str):
    """Preset `name` has timm's model of that name's parameter count and state_dict names and
    shapes (timm built on the meta device); returns the compiled network."""
    import timm

    import resnet_compiler as rc
    net = rc.compile(name)
    with torch.device("meta"):
        peer = timm.create_model(name)
    want = {k: tuple(v.shape) for k, v in peer.state_dict().items()}
    got = {f"{n}.{k}": tuple(s) for n, d in net.ir.nodes(data=True)
           for k, s in d.get("tensors", {}).items()}
    assert got == want, name
    assert net.total_params == sum(p.numel() for p in peer.parameters()), name
    return net


def run_main(*argv: object) -> tuple[int, list[str]]:
    """`resnet-compile ARGV` in this process: its exit code and its stderr lines, which must
    hold no traceback."""
    import contextlib
    import io

    from resnet_compiler.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    lines = err.getvalue().strip().splitlines()
    assert not any("Traceback" in line for line in lines), lines
    return code, lines


def on_meta(make):
    """`make()` built on the meta device. torchvision's RegNet computes its widths with tensors
    and .tolist(), which meta tensors cannot do, so that one step runs on the CPU."""
    from torchvision.models import regnet
    original = regnet.BlockParams.from_init_params

    def on_cpu(*args, **kwargs):
        with torch.device("cpu"):
            return original(*args, **kwargs)
    regnet.BlockParams.from_init_params = on_cpu
    try:
        with torch.device("meta"):
            return make()
    finally:
        regnet.BlockParams.from_init_params = original
