"""A bounded JSON list of records in the PKI directory (waiting boots; pending machines
are a journal.Journal: a flood of them must not rewrite the list per request).

The enrollment service and the admin's CLI are separate processes that both change these
files: every change is a read-modify-write under an exclusive flock, written atomically, and
only the `limit` most recently seen records are kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from chaosnode.files import atomic_write


class Record(Protocol):
    """What a stored record has: the MACs it came from and when it was last seen."""

    @property
    def macs(self) -> tuple[str, ...]: ...

    @property
    def last_seen(self) -> str: ...  # ISO 8601, UTC: sorts in time order


R = TypeVar("R", bound=Record)


class RecordFile(Generic[R]):
    def __init__(
        self,
        path: Path,
        make: Callable[..., R],
        key: Callable[[R], str],
        limit: int,
        unreadable: Callable[[str], Exception],
    ) -> None:
        self.path = path
        self.make = make
        self.key = key
        self.limit = limit
        self.unreadable = unreadable  # the typed error for a broken file, given the reason

    def entries(self) -> list[R]:
        if not self.path.exists():
            return []
        try:
            raw: list[dict[str, Any]] = json.loads(self.path.read_text())
            return [self.make(**{**e, "macs": tuple(e["macs"])}) for e in raw]
        except (ValueError, TypeError, KeyError) as exc:
            raise self.unreadable(f"{self.path}: unreadable ({exc})") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, R]]:
        """The records by key, written back (bounded) when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = {self.key(r): r for r in self.entries()}
            yield records
            kept = sorted(records.values(), key=lambda r: r.last_seen)[-self.limit :]
            data = [{**asdict(r), "macs": list(r.macs)} for r in kept]  # type: ignore[call-overload]
            atomic_write(self.path, json.dumps(data, indent=1) + "\n")
