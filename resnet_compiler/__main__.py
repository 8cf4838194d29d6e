"""`python -m resnet_compiler ...` is the same as `resnet-compile ...`."""

from .cli import entry_point

entry_point()
