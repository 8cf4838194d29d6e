"""Activations: ReLU (`nn.ReLU`, ONNX `Relu`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .base import Attrs, OpDef, OpModel


class ReLU(OpModel):
    op: Literal["relu"]


class ReLUOp(OpDef):
    kind = "relu"
    model = ReLU
    role = "act"
    inplace_ok = True

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return "nn.ReLU(inplace=True)" if inplace else "nn.ReLU()"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("Relu", node, list(inputs), node)
