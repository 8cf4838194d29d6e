"""Pooling: windowed max and average pooling, anti-aliased blur pooling, and the head's global
pooling."""

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, StrictBool

from ..messages import format_shape
from .base import (
    Attrs,
    Context,
    Offset,
    OpDef,
    OpModel,
    Shape,
    ShapeError,
    Size,
    fold_constants,
    spatial_size,
    text,
    window_shape,
)

if TYPE_CHECKING:
    import numpy as np


class MaxPool(OpModel):
    """Max pooling; `stride` defaults to `kernel`, `padding` to kernel // 2."""

    op: Literal["maxpool"]
    kernel: Size
    stride: Size | None = None
    padding: Offset | None = None
    ceil_mode: StrictBool = False


class AvgPool(OpModel):
    """Average pooling; `stride` defaults to `kernel`, `padding` to 0."""

    op: Literal["avgpool"]
    kernel: Size
    stride: Size | None = None
    padding: Offset = 0
    ceil_mode: StrictBool = False
    count_include_pad: StrictBool = True
    pad_end: Offset = Field(0, description="Zeros added after the last row and column before"
                            " pooling, counted in the average (timm's AvgPool2dSame pads so).")


class BlurPool(OpModel):
    """Anti-aliased downsampling (Zhang, 2019), as timm's BlurPool2d: each channel is blurred by a
    fixed `size` x `size` binomial filter (default 3) and subsampled by `stride` (default 2),
    after reflect padding of ((stride - 1) + (size - 1)) // 2 on every side. The filter is fixed,
    so the op adds no parameters."""

    op: Literal["blurpool"]
    size: Size = 3
    stride: Size = 2


class _WindowPool(OpDef):
    def pycls_counts(self, attrs: Attrs, macs: int) -> tuple[int, int]:
        return macs, math.prod(attrs["shape"])  # pycls's pool2d_cx: its output, no flops

    sizes = {"kernel": 1, "stride": 1, "padding": 0}
    attr_names: tuple[str, ...] = ("kernel", "stride", "padding", "ceil_mode")

    def sources(self, op: Any, ctx: Context) -> dict[str, Any]:
        out = super().sources(op, ctx)
        out.setdefault("stride", out["kernel"])
        out.setdefault("padding", fold_constants(f"({out['kernel']}) // 2"))
        return out

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {k: values[k] for k in self.attr_names}

    def is_identity(self, attrs: Attrs) -> bool:
        return attrs["kernel"] == 1 and attrs["stride"] == 1 and attrs["padding"] == 0

    def identity_condition(self, src: Mapping[str, Any]) -> str | None:
        parts = []
        for key, value in (("kernel", 1), ("stride", 1), ("padding", 0)):
            source = text(src[key])
            if source == str(value):
                continue
            if source.lstrip("-").isdigit():  # a constant that is not the no-op value
                return None
            operand = source if source.isidentifier() else f"({source})"
            parts.append(f"{operand} == {value}")
        return " and ".join(dict.fromkeys(parts)) or "True"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        return window_shape(attrs, x, x[0], pool=True)

    def _window_args(self, src: Mapping[str, Any]) -> list[str]:
        return [f"kernel_size={text(src['kernel'])}", f"stride={text(src['stride'])}"]

    def _onnx_attrs(self, attrs: Attrs) -> dict[str, Any]:
        k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
        return {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p],
                "ceil_mode": int(attrs["ceil_mode"])}


class MaxPoolOp(_WindowPool):
    kind = "maxpool"
    model = MaxPool

    def stem_anti_alias(self, op: Mapping[str, Any], aa: str) -> list[dict[str, Any]] | None:
        """A named strided max pool, as timm's aa_layer has it: `avg` a 2x2 average pool of the
        stride (aa_layer(2)), `blur` a stride-1 max pool then a strided blur pool (`NAME.0`,
        `NAME.1`)."""
        stride = op.get("stride", op.get("kernel"))
        if not (isinstance(stride, int) and not isinstance(stride, bool) and stride > 1
                and isinstance(op.get("name"), str)):
            return None
        name = op["name"]
        if aa == "avg":
            return [{"op": "avgpool", "name": name, "kernel": stride, "stride": stride}]
        kept = {k: v for k, v in op.items() if k not in ("name", "stride")}
        return [{**kept, "name": f"{name}.0", "stride": 1},
                {"op": "blurpool", "name": f"{name}.1", "stride": stride}]

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [*self._window_args(src), f"padding={text(src['padding'])}"]
        if src["ceil_mode"]:
            args.append("ceil_mode=True")
        return f"nn.MaxPool2d({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        return b.add("MaxPool", node, list(inputs), node, **self._onnx_attrs(attrs))


class AvgPoolOp(_WindowPool):
    kind = "avgpool"
    model = AvgPool
    sizes = {"kernel": 1, "stride": 1, "padding": 0, "pad_end": 0}
    attr_names = ("kernel", "stride", "padding", "ceil_mode", "count_include_pad", "pad_end")

    def is_identity(self, attrs: Attrs) -> bool:
        return super().is_identity(attrs) and attrs["pad_end"] == 0

    def identity_condition(self, src: Mapping[str, Any]) -> str | None:
        condition = super().identity_condition(src)
        end = text(src["pad_end"])
        if condition is None or end == "0":
            return condition
        if end.isdigit():
            return None
        part = f"{end if end.isidentifier() else f'({end})'} == 0"
        return part if condition == "True" else f"{condition} and {part}"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        c, h, w = inputs[0]
        e = attrs["pad_end"]
        return window_shape(attrs, (c, h + e, w + e), c, pool=True)

    def sources(self, op: Any, ctx: Context) -> dict[str, Any]:
        out = OpDef.sources(self, op, ctx)
        out.setdefault("stride", out["kernel"])
        return out

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = self._window_args(src)
        if text(src["padding"]) != "0":
            args.append(f"padding={text(src['padding'])}")
        if src["ceil_mode"]:
            args.append("ceil_mode=True")
        if not src["count_include_pad"]:
            args.append("count_include_pad=False")
        pool = f"nn.AvgPool2d({', '.join(args)})"
        end = text(src["pad_end"])
        return pool if end == "0" else f"nn.Sequential(nn.ZeroPad2d((0, {end}, 0, {end})), {pool})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        import numpy as np
        x, e = inputs[0], attrs["pad_end"]
        if e:
            c, h, w = b.g.nodes[next(iter(b.g.predecessors(node)))]["shape"]
            pads = b.const(f"{node}.pads", np.array([0, 0, 0, 0, 0, 0, e, e]), "<i8")
            x = b.add("Pad", f"{node}.pad", [x, pads], f"{node}.pad", shape=(c, h + e, w + e),
                      mode="constant")
        return b.add("AveragePool", node, [x], node,
                     count_include_pad=int(attrs["count_include_pad"]), **self._onnx_attrs(attrs))


class GlobalPool(OpModel):
    """Global pooling to 1x1 (in a head list: where forward_head begins)."""

    op: Literal["global_pool"]
    mode: Literal["avg", "max"] = "avg"


class GlobalPoolOp(OpDef):
    """The head's global pooling (`head.pool: avg | max`) to 1x1."""

    kind = "global_pool"
    model = GlobalPool
    role = "global_pool"

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        return (inputs[0][0], 1, 1)

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return f"nn.Adaptive{'Avg' if src['mode'] == 'avg' else 'Max'}Pool2d(1)"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        op_type = "GlobalAveragePool" if attrs["mode"] == "avg" else "GlobalMaxPool"
        return b.add(op_type, node, list(inputs), node)


BLUR_POOL_CLASS = '''
class BlurPool2d(nn.Module):
    """Anti-aliased downsampling (Zhang, 2019): a fixed binomial blur per channel, then a stride.
    The filter is a buffer outside the state_dict, rebuilt from `size` on construction."""

    def __init__(self, channels: int, size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride
        self.padding = ((stride - 1) + (size - 1)) // 2
        row = [1.0]  # binomial coefficients, one row of Pascal's triangle per step
        for _ in range(size - 1):
            row = [a + b for a, b in zip([0.0, *row], [*row, 0.0], strict=True)]
        coeffs = torch.tensor(row) / 2 ** (size - 1)
        filt = (coeffs[:, None] * coeffs[None, :]).expand(channels, 1, size, size)
        self.register_buffer("filt", filt.contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, [self.padding] * 4, mode="reflect")
        return nn.functional.conv2d(
            x, self.filt, stride=self.stride, groups=self.channels
        )
'''


def binomial_filter(size: int) -> "np.ndarray":
    """The normalised 2-D binomial filter: outer product of row `size - 1` of Pascal's
    triangle with itself, divided so that it sums to 1 (timm's BlurPool2d filter)."""
    import numpy as np
    row = np.array([1.0])
    for _ in range(size - 1):
        row = np.convolve(row, [1.0, 1.0])
    row /= 2.0 ** (size - 1)
    return np.outer(row, row)


def blur_padding(size: int, stride: int) -> int:
    """timm's get_padding(size, stride): the same on every side."""
    return ((stride - 1) + (size - 1)) // 2


class BlurPoolOp(OpDef):
    kind = "blurpool"
    model = BlurPool
    sizes = {"size": 2, "stride": 1}
    role = "pool"
    torch_helpers = (BLUR_POOL_CLASS,)

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"channels": inputs[0][0], "size": values["size"], "stride": values["stride"]}

    def shape(self, attrs: Attrs, inputs: Sequence[Shape]) -> Shape:
        (x,) = inputs
        if len(x) != 3:
            raise ShapeError(f"blurpool needs a feature map, got {format_shape(x)}")
        c, h, w = x
        k, s = attrs["size"], attrs["stride"]
        p = blur_padding(k, s)
        if p >= min(h, w):
            raise ShapeError(f"reflect padding {p} (size {k}, stride {s}) needs a feature map larger"
                             f" than {p}x{p}, got {h}x{w}")
        oh, ow = spatial_size(h, k, s, p), spatial_size(w, k, s, p)
        if oh < 1 or ow < 1:
            raise ShapeError(f"the {h}x{w} feature map is smaller than the {k}x{k} blur filter")
        return (c, oh, ow)

    def macs(self, attrs: Attrs, inputs: Sequence[Shape], out: Shape) -> int:
        """A depthwise convolution (with a fixed filter)."""
        import numpy as np
        return int(np.prod(out)) * attrs["size"] ** 2

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        args = [in_channels]
        if text(src["size"]) != "3":
            args.append(f"size={text(src['size'])}")
        if text(src["stride"]) != "2":
            args.append(f"stride={text(src['stride'])}")
        return f"BlurPool2d({', '.join(args)})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """Pad (reflect), then a depthwise Conv with the fixed filter as a constant."""
        import numpy as np
        c, k, s = attrs["channels"], attrs["size"], attrs["stride"]
        p = blur_padding(k, s)
        x = inputs[0]
        if p:
            pads = b.const(f"{node}.pads", np.array([0, 0, p, p, 0, 0, p, p]), dtype="<i8")
            in_shape = b.g.nodes[next(iter(b.g.pred[node]))]["shape"]
            x = b.add("Pad", f"{node}.pad", [x, pads], f"{node}.pad",
                      shape=(c, in_shape[1] + 2 * p, in_shape[2] + 2 * p), mode="reflect")
        filt = np.broadcast_to(binomial_filter(k), (c, 1, k, k))
        return b.add("Conv", node, [x, b.const(f"{node}.filt", filt)], node, kernel_shape=[k, k],
                     strides=[s, s], group=c)
