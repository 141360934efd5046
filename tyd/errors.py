"""Typed errors. Library code raises these; only `tyd.cli` turns them into exit codes."""

from __future__ import annotations


class TydError(Exception):
    """Base of every error tyd reports without a traceback."""

    exit_code = 1


class ConfigError(TydError):
    """The tyd config file is missing or invalid. Carries every problem found."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class CodecError(TydError):
    """A frame is malformed, oversized, of an unknown version or type."""


class ProtocolError(TydError):
    """A well-formed message arrived where the protocol does not allow it."""


class IdentityError(TydError):
    """A peer's certificate does not match the name or address it claims."""


class HookError(TydError):
    """An adapter (nft, VICI, export) failed to apply a change."""
