"""Normalisation: BatchNorm (`nn.BatchNorm2d`, ONNX `BatchNormalization` or folded into a conv)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from .base import Attrs, InitOptions, OpDef, OpModel, Shape, expect_channels


class BatchNorm(OpModel):
    """Batch normalisation over the current channels."""

    op: Literal["bn"]
    eps: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 1e-5
    momentum: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.1


BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


class BatchNormOp(OpDef):
    kind = "bn"
    model = BatchNorm
    role = "norm"
    buffers = frozenset({"running_mean", "running_var", "num_batches_tracked"})
    torch_init = (("nn.BatchNorm2d", ("nn.init.ones_(m.weight)", "nn.init.zeros_(m.bias)")),)
    folds_into_conv = True

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"channels": inputs[0][0], "eps": values["eps"], "momentum": values["momentum"]}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        expect_channels("bn", attrs["channels"], inputs[0])
        return inputs[0]

    def tensors(self, attrs: Attrs) -> dict[str, Shape]:
        c = (attrs["channels"],)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c,
                "num_batches_tracked": ()}

    def init(self, attrs: Attrs, tensors: Mapping[str, Shape], rng: np.random.Generator,
             options: InitOptions) -> dict[str, np.ndarray]:
        c = tensors["weight"]
        if options.realistic_norm:
            out = {"weight": rng.uniform(0.3, 0.7, c), "bias": rng.normal(0.0, 0.1, c),
                   "running_mean": rng.normal(0.0, 0.1, c), "running_var": rng.uniform(0.75, 1.25, c)}
            out = {k: v.astype(np.float32) for k, v in out.items()}
        else:
            out = {"weight": np.full(c, 0.0 if options.zero_gamma else 1.0, dtype=np.float32),
                   "bias": np.zeros(c, np.float32), "running_mean": np.zeros(c, np.float32),
                   "running_var": np.ones(c, np.float32)}
        out["num_batches_tracked"] = np.array(0, dtype=np.int64)
        return out

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [in_channels]
        if src["eps"] != 1e-5:
            args.append(f"eps={src['eps']!r}")
        if src["momentum"] != 0.1:
            args.append(f"momentum={src['momentum']!r}")
        return f"nn.BatchNorm2d({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        ins = [inputs[0], *(b.init(f"{node}.{t}", b.weight(f"{node}.{t}")) for t in BN_TENSORS)]
        return b.add("BatchNormalization", node, ins, node, epsilon=float(attrs["eps"]))

    def fold_into_conv(self, b: Any, node: str, attrs: Attrs, weight: np.ndarray,
                       bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta, computed in float64."""
        gamma, beta, mean, var = (b.weight(f"{node}.{t}").astype(np.float64) for t in BN_TENSORS)
        scale = gamma / np.sqrt(var + float(attrs["eps"]))
        w = np.multiply(weight, scale[:, None, None, None], dtype=np.float64)
        b0 = bias.astype(np.float64) if bias is not None else np.zeros_like(mean)
        return w.astype(np.float32), ((b0 - mean) * scale + beta).astype(np.float32)
