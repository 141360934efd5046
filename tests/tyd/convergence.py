"""The property both gossip modes must have (tests/tyd/test_gossip.py, test_swim.py): four
maps that each saw some updates, after exchanges in any drawn order and then a few full
rounds, hold the same gossiped members."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from tyd.membership import ClusterMap

# exchanges between four maps, in the order drawn: (asker, answerer)
EXCHANGES = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=40)


def settle(
    maps: Sequence[ClusterMap],
    exchanges: list[tuple[int, int]],
    exchange: Callable[[ClusterMap, ClusterMap], Any],
) -> None:
    """The drawn exchanges, then three full rounds (every map asks every other): whatever
    happened before, a few full rounds settle it."""
    for i, j in exchanges:
        if i != j:
            exchange(maps[i], maps[j])
    for _ in range(3):
        for a in maps:
            for b in maps:
                if a is not b:
                    exchange(a, b)


def agree(maps: Sequence[ClusterMap], state: Callable[[ClusterMap], list[Any]]) -> bool:
    """Every map holds the same rows of `state` for the members it learnt by gossip (each
    map's own member is its own: a map's view of itself is not gossiped to itself)."""
    own = {m.me.name for m in maps}

    def gossiped(m: ClusterMap) -> list[Any]:
        return [row for row in state(m) if row[0] not in own]

    return all(gossiped(m) == gossiped(maps[0]) for m in maps)
