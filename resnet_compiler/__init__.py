"""resnet-compiler: declarative ResNet-family specs compiled to a shape-checked graph, readable
PyTorch source and ONNX."""

from .compiler import CompiledNetwork, compile  # noqa: E402
from .errors import SpecError  # noqa: E402
from .language.presets import list_models
from .version import __version__

__all__ = ["CompiledNetwork", "SpecError", "__version__", "compile", "list_models"]
