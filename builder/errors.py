"""Typed errors. Library code raises these; only the CLI turns them into exit codes."""

from __future__ import annotations

from dataclasses import dataclass


class ChaosError(Exception):
    """Base of every error chaos-build reports to the user without a traceback."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, which field, what and how to fix it."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.field:
            return f"{where}: {self.field}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(ChaosError):
    """chaos.yaml is invalid. Carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PkiError(ChaosError):
    """The cluster PKI cannot do what was asked (missing CA, unknown node, ...)."""


class RenderError(ChaosError):
    """A template or overlay could not be rendered or written."""


class BuildError(ChaosError):
    """An image build step failed."""


class ToolMissing(ChaosError):
    """A host tool that a step needs is not installed."""
