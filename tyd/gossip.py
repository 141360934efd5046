"""Digest gossip, pure: what a node holds (its summary) and what a peer lacks (the delta).

A summary names every member the node gossips with its record's rev (8 hex digits of a
hash of the record's signature: a record is never re-signed with the same bytes) and the
newest heartbeat count it holds. A delta holds the records whose rev the asker does not
hold (with the certificate only when the asker lacks the member or said it lacks the
certificate, rev `-`) and the heartbeats newer than the asker's. In a steady cluster no
record travels; only heartbeats do, each to each node about once.
"""

from __future__ import annotations

import dataclasses
import hashlib

from .codec import Have
from .member import Beat, Member
from .membership import ClusterMap

NO_CERT = "-"


def rev(m: Member) -> str:
    """Which signed record of a member this is."""
    if m.proof is None:  # unsigned maps (tests of the map alone)
        data = f"{m.incarnation}:{m.heartbeat}:{m.state.value}:{m.fingerprint}".encode()
    else:
        data = m.proof.signature
    return hashlib.sha256(data).hexdigest()[:8]


def summary(cmap: ClusterMap, lacking_cert: frozenset[str] = frozenset()) -> tuple[Have, ...]:
    out = []
    for m in cmap.members():
        b = cmap.beat_of(m.name)
        out.append(Have(m.name, NO_CERT if m.name in lacking_cert else rev(m),
                        b.count if b else 0))
    return tuple(out)


def delta(cmap: ClusterMap, have: tuple[Have, ...]) -> tuple[tuple[Member, ...],
                                                             tuple[Beat, ...]]:
    """What the asker of `have` lacks: records (certificates only where needed) and beats."""
    held = {h.name: h for h in have}
    records: list[Member] = []
    beats: list[Beat] = []
    for m in cmap.members():
        h = held.get(m.name)
        if h is None or h.rev != rev(m):
            send_cert = h is None or h.rev == NO_CERT
            records.append(m if send_cert or m.proof is None else dataclasses.replace(
                m, proof=dataclasses.replace(m.proof, cert=b"")))
        b = cmap.beat_of(m.name)
        if b is not None and b.incarnation == m.incarnation and (
                h is None or b.count > h.beat or h.rev != rev(m)):
            beats.append(b)
    return tuple(records), tuple(beats)
