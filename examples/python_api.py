"""The Python API in one page: compile a spec, inspect the graph, build the module, export ONNX.

Run: python examples/python_api.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

import resnet_compiler as rc

ROOT = Path(__file__).resolve().parents[1]

# A spec can be a file or a dict; here, a small network for 32x32 images built from a dict.
spec = {
    "name": "tiny_resnet",
    "input": {"channels": 3, "height": 32, "width": 32},
    "num_classes": 10,
    "stem": [{"op": "conv", "name": "conv1", "channels": 16, "kernel": 3},
             {"op": "bn", "name": "bn1"}, {"op": "relu", "name": "relu"}],
    "stages": [{"block": "basic", "depth": 2, "channels": 16},
               {"block": "bottleneck", "depth": 2, "channels": 16, "stride": 2, "se": True}],
}
net = rc.compile(spec)
print(f"{net.name}: {net.total_params:,} parameters, {net.total_macs / 1e6:.1f} MMACs")
print("layer2.0.conv2:", net.graph.nodes["layer2.0.conv2"])

# The graph answers architecture questions before any GPU time is spent.
biggest = max(net.graph.nodes, key=lambda n: net.graph.nodes[n]["params"])
print(f"largest op: {biggest} ({net.graph.nodes[biggest]['params']:,} parameters)")

model = net.build_torch().eval()
with torch.inference_mode():
    print("logits:", tuple(model(torch.randn(2, 3, 32, 32)).shape))

with tempfile.TemporaryDirectory() as tmp:
    (Path(tmp) / "tiny_resnet.py").write_text(net.to_torch_source())
    net.to_onnx(Path(tmp) / "tiny_resnet.onnx", weights=model.state_dict())
    print("wrote", sorted(p.name for p in Path(tmp).iterdir()))

# Presets load the same way; their torchvision twins share state_dict keys.
r50 = rc.compile(ROOT / "spec" / "resnet50.yaml")
print(r50.summary().splitlines()[-4])
