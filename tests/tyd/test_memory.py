"""When the daemon reclaims the memory closed connections leave (tyd.memory.Reclaimer)."""

from __future__ import annotations

from tyd.memory import RECLAIM_AFTER, Reclaimer


def ticks(r: Reclaimer, closes_per_tick: list[int]) -> list[bool]:
    out = []
    for n in closes_per_tick:
        for _ in range(n):
            r.closed()
        out.append(r.due())
    return out


def test_no_close_no_reclaim() -> None:
    assert ticks(Reclaimer(), [0, 0, 0]) == [False, False, False]


def test_a_few_closes_are_reclaimed_on_the_first_quiet_tick_and_once() -> None:
    assert ticks(Reclaimer(), [3, 2, 0, 0, 0]) == [False, False, True, False, False]


def test_a_wave_is_reclaimed_at_once_and_again_on_the_next_quiet_tick() -> None:
    """The wave's last transports let go of their buffers after they were counted."""
    assert ticks(Reclaimer(), [RECLAIM_AFTER, 0, 0]) == [True, True, False]


def test_a_steady_trickle_is_reclaimed_in_batches() -> None:
    got = ticks(Reclaimer(), [8] * 20)
    assert got.count(True) == 20 * 8 // RECLAIM_AFTER
    assert got[RECLAIM_AFTER // 8 - 1] is True


def test_the_rest_of_a_wave_is_reclaimed_though_a_connection_stays_open() -> None:
    """Stop 31's CI: a reclaim in mid-wave, then fewer than RECLAIM_AFTER more closed; the
    old rule waited for no connection to be open, which a busy daemon never reaches."""
    assert ticks(Reclaimer(), [RECLAIM_AFTER, RECLAIM_AFTER // 2, 0]) == [True, False, True]
