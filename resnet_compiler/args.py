"""Command-line plumbing shared by `resnet-compile` and `resnet-compile train`: a parser whose
errors go through the same one-line, exit-2 path as every other usage error, and checked types."""

from __future__ import annotations

import argparse
import math

from .errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def nonnegative_int(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def sizes_list(text: str) -> list[tuple[int, int]]:
    """'64x64,96x128' -> [(64, 64), (96, 128)]: input heights and widths."""
    out = []
    for part in text.split(","):
        h, x, w = part.strip().partition("x")
        if not (x and h.isdigit() and w.isdigit() and int(h) > 0 and int(w) > 0):
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a size like 64x96")
        out.append((int(h), int(w)))
    return out


def batch_list(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]: batch sizes, each at least 1."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not (part.isdigit() and int(part) > 0):
            raise argparse.ArgumentTypeError(f"{part!r} is not a batch size (a whole number >= 1)")
        out.append(int(part))
    return out


SPEC_HELP = ("spec file (.yaml, .yml or .json) or a preset name (resnet50d; see `resnet-compile "
             "models`); a file that exists wins over a preset of the same name")


def add_spec_argument(p: argparse.ArgumentParser, name: str = "spec",
                      help: str = SPEC_HELP) -> None:  # noqa: A002 - argparse's own word
    """The spec positional and `--set PATH=VALUE`, as every command that takes a spec has them."""
    p.add_argument(name, help=help)
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="PATH=VALUE",
                   help="override a value of the spec by its dotted path, after extends: "
                        "(stages.2.depth=23, stages.layer3.depth=23, defaults.act=silu); the "
                        "value is YAML; repeatable")
