"""Which names a spec may give modules, variables and classes.

Every name from a spec reaches generated code as an attribute or local name, so it must be a plain
identifier that no nn.Module attribute, Python keyword or name of the generated code already uses.
"""

from __future__ import annotations

import builtins
import keyword
import re

# Attribute names an nn.Module already has, plus names the generated code uses itself.
RESERVED_NAMES = frozenset({
    "training", "forward", "state_dict", "load_state_dict", "parameters", "named_parameters",
    "buffers", "named_buffers", "children", "named_children", "modules", "named_modules", "apply",
    "cuda", "cpu", "to", "type", "float", "double", "half", "bfloat16", "eval", "train",
    "zero_grad", "share_memory", "extra_repr", "register_buffer", "register_parameter",
    "register_module", "add_module", "get_submodule", "get_parameter", "get_buffer",
    "requires_grad_", "reset_parameters", "compile", "dump_patches", "call_super_init",
    "self", "x", "out", "shortcut", "nn", "torch", "super", "math",
    "T_destination", "get_extra_state", "set_extra_state", "set_submodule", "to_empty", "ipu",
    "xpu", "mtia", "register_backward_hook", "register_forward_hook",
    "register_forward_pre_hook", "register_full_backward_hook", "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "make_divisible", "BlurPool2d", "DropPath", "ChannelConv1d",
    "FrozenBatchNorm2d", "StdConv2d", "OrderedDict", "log2", "ceil", "floor",  # generated helpers
})
MAX_NAME_LENGTH = 64
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def _check_name(value: str, reserved: frozenset[str]) -> str:
    if not _IDENTIFIER.match(value) or len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{value[:80]!r} is not a valid name: use letters, digits and _, starting"
                         f" with a letter, at most {MAX_NAME_LENGTH} characters")
    if keyword.iskeyword(value) or value in reserved:
        raise ValueError(f"{value!r} is reserved; choose another name")
    return value


def check_identifier(value: str) -> str:
    """A module or op name: also none of nn.Module's own attributes."""
    return _check_name(value, RESERVED_NAMES)


# What a block's or module's constructor is always given: its own params and vars may not take
# these names. Every other name the language defines (position values such as `dilation`, and any
# added later) is shadowed by a param or var of the same name, so old specs keep their meaning.
CONSTRUCTOR_VARIABLES = frozenset({"in_channels", "channels", "stride", "out_channels"})
# Names the generated code itself uses as locals or imports.
CODE_NAMES = frozenset({"self", "x", "out", "nn", "torch", "math", "super", "shortcut", "preact",
                        "OrderedDict", "make_divisible", "radix_softmax", "I", "O", "l"})


def check_variable(value: str) -> str:
    """A param or var: shadows the language's names, but not the constructor's or the code's."""
    _check_name(value, CODE_NAMES)
    if value in CONSTRUCTOR_VARIABLES or hasattr(builtins, value):
        raise ValueError(f"{value!r} is a predefined or builtin name; choose another")
    return value


def check_class_name(value: str) -> str:
    check_identifier(value)
    if not value[0].isupper():
        raise ValueError(f"class name {value!r} must start with an upper-case letter")
    return value
