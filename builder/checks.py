"""What a cross-field check reports through, and the helpers every model's checks share
(builder/validate.py for the core model, a feature's Feature.check for its section)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from .loader import Path_

Report = Callable[[Path_, str], None]  # (path in chaos.yaml, message): one problem


def duplicates(
    items: Iterable[tuple[int, Hashable]], on_dup: Callable[[int, int, Hashable], None]
) -> None:
    seen: dict[Hashable, int] = {}
    for i, value in items:
        if value in seen:
            on_dup(i, seen[value], value)
        else:
            seen[value] = i
