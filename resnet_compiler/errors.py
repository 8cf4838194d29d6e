"""Errors that carry a position in the spec, so every message reads `file:line: path: problem`."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_REPORTED = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where it is and what is wrong."""

    path: str
    message: str
    line: int | None = None
    source: str | None = None  # the file it was written in, when not the error's own (extends:)


@dataclass
class SpecError(Exception):
    """An invalid spec (exit code 2). Holds one or more problems, each printed on its own line."""

    problems: list[Problem] = field(default_factory=list)
    source: str = "<spec>"

    def __str__(self) -> str:
        return "\n".join(self.format_lines())

    def format_lines(self) -> list[str]:
        """One line per problem, at most MAX_REPORTED of them."""
        lines = []
        for p in self.problems[:MAX_REPORTED]:
            source = p.source or self.source
            where = f"{source}:{p.line}" if p.line else source
            lines.append(f"{where}: {p.path or '<root>'}: {p.message}" if p.path
                         else f"{where}: {p.message}")
        if len(self.problems) > MAX_REPORTED:
            lines.append(f"{self.source}: ... and {len(self.problems) - MAX_REPORTED} more problems")
        return lines

    @classmethod
    def single(cls, path: str, message: str, source: str = "<spec>",
               line: int | None = None) -> SpecError:
        return cls([Problem(path, message, line)], source)


class UsageError(Exception):
    """Bad command-line use or a bad auxiliary input (weights, data, output path): exit code 2."""


class VerificationError(Exception):
    """Two runtimes disagree, or a runtime failed while running a valid model: exit code 1."""
