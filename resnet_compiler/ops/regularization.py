"""Regularisation that exists only in training: stochastic depth (`drop_path`), as timm's DropPath
computes it. At inference it is the identity, so it has no ONNX nodes and counts nothing."""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator

from .base import Attrs, ExprText, OpDef, OpModel, Shape, text

Rate = Union[Annotated[float, Field(allow_inf_nan=False)], ExprText]  # noqa: UP007
RATE_RANGE = (0.0, 1.0)  # [lo, hi): a rate of 1 would drop every sample


class DropPath(OpModel):
    """Stochastic depth (Huang et al.): in training each sample's input is zeroed with
    probability `rate` and the kept samples are scaled by 1 / (1 - rate); the identity at
    inference. `rate` is a number from 0 to below 1, or an expression such as `drop_path_rate`
    (a block's share of defaults.drop_path_rate). A rate of 0 leaves the op out."""

    op: Literal["drop_path"]
    rate: Rate

    @field_validator("rate")
    @classmethod
    def _rate_in_range(cls, value: float | str) -> float | str:
        """A number is checked here, in one line; an expression (`drop_path_rate`) is checked
        against `reals` once it is evaluated."""
        lo, hi = RATE_RANGE
        if isinstance(value, float) and not lo <= value < hi:
            raise ValueError(f"rate {value!r} must be from {lo} to below {hi} (a rate of 1 would"
                             " drop every sample)")
        return value


DROP_PATH_CLASS = '''
class DropPath(nn.Module):
    """Stochastic depth (Huang et al.): in training, zero whole samples with probability `rate`
    and scale the kept ones by 1 / (1 - rate), so the expected output is the input; the identity
    at inference."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0], *([1] * (x.ndim - 1)))).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
'''


class DropPathOp(OpDef):
    kind = "drop_path"
    onnx_passthrough = True
    model = DropPath
    reals = {"rate": RATE_RANGE}
    role = "regularization"
    torch_helpers = (DROP_PATH_CLASS,)

    def resolve(self, values: Mapping[str, Any], inputs: Sequence[Shape]) -> dict[str, Any]:
        return {"rate": float(values["rate"])}

    def is_identity(self, attrs: Attrs) -> bool:
        return attrs["rate"] == 0.0

    def identity_condition(self, src: Mapping[str, Any]) -> str | None:
        rate = text(src["rate"])
        try:
            return "True" if float(rate) == 0.0 else None
        except ValueError:  # an expression: decided per instance
            return f"{rate} == 0" if rate.isidentifier() else f"({rate}) == 0"

    def acts(self, attrs: Attrs, out: Shape) -> int:
        return 0  # nothing at inference

    def torch_module(self, src: Mapping[str, Any], in_channels: str, inplace: bool) -> str:
        return f"DropPath({text(src['rate'])})"

    def onnx(self, b: Any, node: str, attrs: Attrs, inputs: Sequence[str]) -> str:
        """Inference only: the op's value is its input's."""
        return inputs[0]
