"""The generated PyTorch source: standalone, deterministic, ruff-clean, trainable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from support import (
    EXAMPLE_SPECS,
    ROOT,
    SPECS,
    module_shapes,
    one_line,
    realistic_bn,
    rel_err,
)

import resnet_compiler as rc
from resnet_compiler.ops import REGISTRY

ALL_SPECS = SPECS + EXAMPLE_SPECS


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda p: p.stem)
def test_source_is_deterministic_standalone_and_ruff_clean(tmp_path: Path, spec: Path) -> None:
    first = rc.compile(spec).to_torch_source()
    assert rc.compile(spec).to_torch_source() == first
    tree = ast.parse(first)
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imports <= {"torch", "collections", "math"} and "torch" in imports
    path = tmp_path / "model.py"
    path.write_text(first)
    ruff = Path(sys.executable).with_name("ruff")
    for rules in ([], ["--select", "E,F,W,I,B,UP,SIM,RUF", "--line-length", "100"]):
        r = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", *rules, str(path)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("spec", EXAMPLE_SPECS + [ROOT / "spec" / "resnet20_cifar.yaml",
                                                  ROOT / "spec" / "resnetv2_50.yaml"],
                         ids=lambda p: p.stem)
def test_inferred_shapes_equal_torchs_at_every_module(spec: Path) -> None:
    net = rc.compile(spec)
    model = realistic_bn(net.build_torch()).eval()
    shapes = module_shapes(model, torch.randn(1, *net.input_shape))
    nodes = {n for n, d in net.graph.nodes(data=True)  # the modules (functional ops have none)
             if d["op"] != "input" and not REGISTRY[d["op"]].functional}
    assert nodes <= set(shapes)
    assert {n: tuple(net.graph.nodes[n]["shape"]) for n in nodes} == {n: shapes[n] for n in nodes}
    assert sum(p.numel() for p in model.parameters()) == net.total_params


def test_the_generated_file_imports_and_builds_with_no_arguments(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.py"
    path.write_text(rc.compile(ROOT / "spec" / "resnet18.yaml").to_torch_source())
    code = (f"import importlib.util, torch; s = importlib.util.spec_from_file_location('m', {str(path)!r}); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); "
            "net = m.ResNet18().eval(); print(tuple(net(torch.zeros(1, 3, 64, 64)).shape))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(1, 1000)"


def test_num_classes_argument_and_channels_last() -> None:
    net = rc.compile(ROOT / "spec" / "resnet20_cifar.yaml")
    model = realistic_bn(net.build_torch(num_classes=7)).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        y = model(x)
        y_cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert y.shape == (3, 7)
    assert rel_err(y, y_cl) < 1e-5


def test_trains_one_step_with_gradients_everywhere() -> None:
    torch.manual_seed(0)
    spec = yaml.safe_load((ROOT / "examples" / "custom_block.yaml").read_text())
    spec["input"].update(height=32, width=32)
    model = rc.compile(spec).build_torch().train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 100, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        # zero-initialised last BNs receive gradient too (they are where each branch starts)
        assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_zero_init_last_bn_starts_every_branch_at_zero() -> None:
    model = rc.compile(ROOT / "examples" / "custom_block.yaml").build_torch()
    bn3 = [m.bn3.weight for n, m in model.named_modules() if n.count(".") == 1 and n.startswith("layer")]
    assert len(bn3) == 8 and all(float(w.detach().abs().sum()) == 0 for w in bn3)
    plain = rc.compile(ROOT / "spec" / "resnet50.yaml").build_torch()
    assert float(plain.layer1[0].bn3.weight.detach().min()) == 1.0


def test_torch_compile_captures_the_whole_model_in_one_graph() -> None:
    """fullgraph=True fails on any graph break; aot_eager traces forward and backward like
    inductor does without spending minutes compiling kernels on a CPU."""
    model = realistic_bn(rc.compile(ROOT / "spec" / "resnet20_cifar.yaml").build_torch()).eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert rel_err(model(x), compiled(x)) < 1e-4


def test_bias_and_stage_params_reach_the_code() -> None:
    src = one_line(rc.compile(ROOT / "spec" / "resnet18_fashion_mnist.yaml").to_torch_source())
    assert "nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=True)" in src
    assert "nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=True)" in src
    src = rc.compile(ROOT / "spec" / "resnext50_32x4d.yaml").to_torch_source()
    assert "Bottleneck(256, 128, stride=2, groups=32, base_width=4)," in src
