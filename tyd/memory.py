"""Memory that comes back after a flood of connections.

Each TLS connection asyncio serves holds a 256 KiB receive buffer inside a reference cycle
(transport <-> protocol), freed only when the cyclic garbage collector runs, which an idle
daemon seldom triggers; and glibc keeps freed heap pages. Measured: a daemon at 36 MB grew
to 116 MB holding 256 idle connections (the global limit) and stayed there after they
closed; after a collection 52 MB, after malloc_trim 41 MB. The daemon asks `Reclaimer`
on its tick whether to call `reclaim()`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable

RECLAIM_AFTER = 64  # connections closed since the last reclaim


def _trimmer() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM = _trimmer()


def reclaim() -> None:
    """Free the cycles closed connections left and give free heap pages back."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


class Reclaimer:
    """When to reclaim: once RECLAIM_AFTER connections have closed since the last time (a
    wave), and on the first tick with no close after some (the wave's end).

    A connection is counted closed before its transport is gone: the transport lets go of
    its buffer in callbacks that run after the count, so a reclaim at the same moment misses
    it. So after a wave's reclaim, one more follows on the next quiet tick. (Stop 31's CI
    kept 32 MB: the rule was "many closed, or none open", and after a reclaim in mid-wave
    the rest of the wave, fewer than RECLAIM_AFTER, waited for a moment with none open.)"""

    def __init__(self) -> None:
        self._closed = 0  # since the last reclaim
        self._at_last_tick = 0

    def closed(self) -> None:
        self._closed += 1

    def due(self) -> bool:
        """Called once per tick: True when `reclaim()` should run now."""
        quiet = self._closed == self._at_last_tick
        wave = self._closed >= RECLAIM_AFTER
        self._at_last_tick = self._closed
        if not (wave or (self._closed and quiet)):
            return False
        self._closed = self._at_last_tick = 1 if wave else 0  # 1: the next quiet tick again
        return True
