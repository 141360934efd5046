"""chaos-pushwatch.service: tell serve when tyd joins this node to the cluster and when tyd's
refusal counters change (chaosnode.push, the node's certificate).

It reads tyd's status file (written by tyd at every change and tick), never tyd itself, so a
slow or absent serve costs tyd nothing. `joined` goes once per tyd run (a tyd restart is a new
incarnation of this node, pushed again), with the members it sees besides itself; refusals
go when their sum changes, at most once per REFUSALS_EVERY seconds. A push that fails is
tried again after a growing pause (at most MAX_PAUSE); the failure is said once.

    python3 -I -m chaosnode.pushwatch [--status /run/tyd/status.json] [--once]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from chaosnode import paths
from chaosnode.console import say
from chaosnode.files import read_json
from chaosnode.push import MemberPush, Pusher, node_sender

POLL: Final = 5.0  # seconds between two looks at tyd's status file
REFUSALS_EVERY: Final = 30.0
FIRST_PAUSE: Final = 10.0
MAX_PAUSE: Final = 300.0
MAX_STATUS: Final = 4 << 20  # tyd's status of a few thousand members
# tyd's counters that count something refused (tyd/daemon.py): connections refused, records
# forged or stale; refused_<reason> splits the records by reason
REFUSAL_COUNTERS: Final = ("refused", "forged", "stale")


@dataclass(frozen=True)
class Seen:
    """What tyd's status file says of this node now."""

    incarnation: int  # this tyd run (its own member's epoch); 0: not known
    joined: bool
    peers: int  # live members besides this node
    refusals: int
    counters: tuple[tuple[str, int], ...]


def seen_in(doc: Mapping[str, Any]) -> Seen:
    """The facts of one status document (tyd/status.py); ValueError if it is not one."""
    try:
        me = str(doc["node"])
        members = doc["members"]
        counters = {str(k): int(v) for k, v in doc["counters"].items()}
        own = [m for m in members if m.get("name") == me]
        incarnation = int(own[0]["incarnation"]) if own else 0
        peers = sum(1 for m in members if m.get("name") != me)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a tyd status file: {exc}") from None
    total = sum(counters.get(k, 0) for k in REFUSAL_COUNTERS)
    return Seen(
        incarnation,
        bool(doc.get("joined")),
        peers,
        total,
        tuple(sorted((k, v) for k, v in counters.items() if k.startswith("refused"))),
    )


def why(before: tuple[tuple[str, int], ...], now: tuple[tuple[str, int], ...]) -> str:
    """The refusal that grew most since the last push: a record's reason (bad_cert, stale,
    ...) or `connection` for connections tyd refused."""
    old = dict(before)
    grown = [(v - old.get(k, 0), k) for k, v in now if v > old.get(k, 0)]
    if not grown:
        return ""
    reasons = [(d, k) for d, k in grown if k != "refused"]
    _, key = max(reasons or grown)
    return "connection" if key == "refused" else key.removeprefix("refused_")[:80]


@dataclass(frozen=True)
class Watch:
    """What was pushed (pure: the loop below sends and keeps time)."""

    node: str
    joined_incarnation: int = -1
    refusals: int = 0
    counters: tuple[tuple[str, int], ...] = ()
    refusals_at: float = float("-inf")

    def due(self, seen: Seen, now: float) -> list[MemberPush]:
        out = []
        if seen.joined and seen.incarnation != self.joined_incarnation:
            out.append(MemberPush(self.node, "joined", peers=min(seen.peers, 65535)))
        if seen.refusals != self.refusals and now - self.refusals_at >= REFUSALS_EVERY:
            out.append(
                MemberPush(
                    self.node,
                    "tyd_refusals",
                    count=seen.refusals,
                    why=why(self.counters, seen.counters) or "reset",
                )
            )
        return out

    def pushed(self, push: MemberPush, seen: Seen, now: float) -> Watch:
        if push.kind == "joined":
            return replace(self, joined_incarnation=seen.incarnation)
        return replace(self, refusals=seen.refusals, counters=seen.counters, refusals_at=now)


def read_status(path: Path) -> Seen | None:
    """None while tyd has written nothing usable (not started, or mid-restart)."""
    try:
        return seen_in(read_json(path, MAX_STATUS))
    except (OSError, ValueError):
        return None


def watch(
    node: str,
    pusher: Pusher,
    status: Path,
    once: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    state, pause, next_try = Watch(node), FIRST_PAUSE, float("-inf")
    while True:
        now = clock()
        seen = read_status(status)
        if seen is not None and now >= next_try:
            for push in state.due(seen, now):
                if pusher.push(push):
                    state, pause = state.pushed(push, seen, now), FIRST_PAUSE
                else:
                    next_try, pause = now + pause, min(pause * 2, MAX_PAUSE)
                    break
        if once:
            return
        sleep(POLL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chaos-pushwatch", description=__doc__.splitlines()[0])
    p.add_argument("--status", type=Path, default=Path(paths.TYD_EXPORTS["status"]))
    p.add_argument("--node-json", type=Path, default=Path(paths.NODE_JSON))
    p.add_argument("--once", action="store_true", help="one look, then exit")
    args = p.parse_args(argv)
    try:
        name, send_one = node_sender(args.node_json)
    except (OSError, ValueError) as exc:
        say(f"chaos-pushwatch: cannot read {args.node_json}: {exc}")
        return 1
    if send_one is None:
        say(
            "chaos-pushwatch: node.json names no push address (serve.address is not set); "
            "nothing to push"
        )
        return 0
    watch(name, Pusher(send_one, say), args.status, args.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
