"""What one entry of the cluster map is. Shared by the codec and the map state."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field


class State(enum.Enum):
    """Member states. `dead` and `suspect` are local judgements from a member's own silence
    and never travel: only the member itself can say it is alive or has left."""

    ALIVE = "alive"
    DEAD = "dead"
    LEFT = "left"


# At the same (incarnation, heartbeat), the more final state wins the merge.
SEVERITY = {State.ALIVE: 0, State.DEAD: 1, State.LEFT: 2}


@dataclass(frozen=True)
class Proof:
    """What makes an entry self-certifying (see tyd.record): the signed body exactly as
    signed, the member's signature over it and its certificate (DER)."""

    cluster: str
    body: bytes
    signature: bytes
    cert: bytes


@dataclass(frozen=True)
class Member:
    """One node as the cluster knows it.

    `incarnation` is the epoch of the node's current run (its start time in ms, so a
    restarted node always outranks its own tombstone); `heartbeat` counts its ticks
    within that run. Only the node itself advances either.
    """

    name: str
    address: ipaddress.IPv4Address
    fingerprint: str
    state: State
    incarnation: int
    heartbeat: int
    slots: int = 1
    stamp: int = 0  # wall-clock ms when the member signed this entry
    proof: Proof | None = field(default=None, compare=False, repr=False)

    @property
    def version(self) -> tuple[int, int]:
        return (self.incarnation, self.heartbeat)

    def newer_than(self, other: Member) -> bool:
        """Does this entry supersede `other` (same node) in a merge?"""
        if self.version != other.version:
            return self.version > other.version
        return SEVERITY[self.state] > SEVERITY[other.state]


@dataclass(frozen=True)
class Beat:
    """A heartbeat: a small record a member signs every tick without its certificate
    (tyd.record verifies it with the key of the member's current record). `count` only
    grows within one incarnation; `stamp` is when it was signed (wall-clock ms)."""

    name: str
    incarnation: int
    count: int
    stamp: int
    signature: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True)
class Accusation:
    """`accuser` signs that `target` at record version (incarnation, heartbeat) failed its
    probes, direct and indirect (swim gossip). It names nobody dead: it makes the target
    suspect everywhere, and the target refutes it by signing a newer record of its own."""

    target: str
    incarnation: int
    heartbeat: int
    accuser: str
    stamp: int
    signature: bytes = field(default=b"", compare=False, repr=False)

    @property
    def version(self) -> tuple[int, int]:
        return (self.incarnation, self.heartbeat)
