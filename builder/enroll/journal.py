"""An append-only file of JSON lines in the PKI directory, compacted when it grows too big.

A flood of unknown machines must not cost a rewrite of the whole list per machine (it was a
read-modify-write of ~280 KiB under a lock, 13 records a second): appending one line is O(1),
under an exclusive flock (the service and the admin's CLI are separate processes) and
fsync'ed, so an answered request is on disk. Readers fold the lines into records; when the
file passes `compact_bytes`, the writer that notices rewrites it as the folded records
(atomically: a temporary file renamed into place). A crash can cut the last line short:
readers skip a line that does not parse, and the next writer starts on a fresh line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

Line = dict[str, Any]
Fold = Callable[[Iterable[Line]], list[Line]]  # every line, oldest first -> the lines to keep


class Journal:
    def __init__(self, path: Path, fold: Fold, compact_bytes: int) -> None:
        self.path = path
        self._fold = fold
        self._compact_bytes = compact_bytes

    def lines(self) -> Iterator[Line]:
        """Every readable line, oldest first (a line cut by a crash is skipped)."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            return
        with f:
            for raw in f:
                with contextlib.suppress(ValueError, RecursionError):
                    line = json.loads(raw)
                    if isinstance(line, dict):
                        yield line

    def append(self, line: Line) -> None:
        data = json.dumps(line, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        with self._locked():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # the last writer crashed mid-line
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if size + len(data) > self._compact_bytes:
                self._rewrite(self._fold(self.lines()))

    def rewrite(self, change: Callable[[list[Line]], list[Line]]) -> None:
        """Fold, change and write back the whole file (rare: the admin's approvals)."""
        with self._locked():
            self._rewrite(change(self._fold(self.lines())))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _rewrite(self, lines: list[Line]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            for line in lines:
                f.write(json.dumps(line, separators=(",", ":"), sort_keys=True).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
