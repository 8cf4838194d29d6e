"""Where each stage's blocks stand: their stride, dilation and first block's dilation."""

from __future__ import annotations

from typing import Any


def stage_geometry(spec: Any, stem_out: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(stride, dilation, first_dilation) per stage: explicit `dilation`, or `output_stride`
    turning strides into dilation once the network has reached it (timm's rule)."""
    out_shape = stem_out
    net_stride = max(1, spec.input.height // max(1, out_shape[1]))
    dilation = previous = 1
    out = []
    for stage in spec.stages:
        stride = stage.stride
        if stage.dilation is not None:
            dilation = stage.dilation
        elif spec.output_stride is not None and net_stride >= spec.output_stride:
            dilation *= stride
            stride = 1
        else:
            net_stride *= stride
        out.append((stride, dilation, previous))
        previous = dilation
    return out
