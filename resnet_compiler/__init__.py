"""resnet-compiler: declarative ResNet-family specs compiled to a shape-checked graph, readable
PyTorch source and ONNX."""

__version__ = "0.1.0"

from .compiler import CompiledNetwork, compile  # noqa: E402
from .errors import SpecError  # noqa: E402

__all__ = ["CompiledNetwork", "SpecError", "__version__", "compile"]
