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

from .codec import WANT_BEAT, WANT_CERT, Have
from .member import Beat, Member, State
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
        out.append(Have(m.name, NO_CERT if m.name in lacking_cert else rev(m), b.count if b else 0))
    return tuple(out)


def delta(
    cmap: ClusterMap, have: tuple[Have, ...], asker: str = ""
) -> tuple[tuple[Member, ...], tuple[Beat, ...]]:
    """What `asker` (its summary `have`) lacks: records, with certificates only where
    needed, and beats; never its own (it is their author)."""
    held = {h.name: h for h in have}
    records: list[Member] = []
    beats: list[Beat] = []
    for m in cmap.members():
        if m.name == asker:
            continue
        h = held.get(m.name)
        if h is None or h.rev != rev(m):
            send_cert = h is None or h.rev == NO_CERT
            records.append(
                m
                if send_cert or m.proof is None
                else dataclasses.replace(m, proof=dataclasses.replace(m.proof, cert=b""))
            )
        b = cmap.beat_of(m.name)
        if (
            b is not None
            and b.incarnation == m.incarnation
            and (h is None or b.count > h.beat or h.rev != rev(m))
        ):
            beats.append(b)
    return tuple(records), tuple(beats)


def wanted(cmap: ClusterMap, have: tuple[Have, ...], asker: str) -> tuple[str, ...]:
    """What the asker's summary shows it holds newer or only there: ask it to push that
    (WANT_CERT: we lack the member, send its certificate too; WANT_BEAT: only its beat)."""
    out = []
    for h in have:
        if h.name == cmap.me.name:
            continue
        m = cmap.get(h.name)
        if m is None:
            out.append(h.name + WANT_CERT)
            continue
        b = cmap.beat_of(h.name)
        if h.rev != rev(m) and h.rev != NO_CERT and h.name != asker:
            out.append(h.name)
        elif h.beat > (b.count if b else 0):
            out.append(h.name + WANT_BEAT)
    return tuple(out)


def pushed(
    cmap: ClusterMap, want: tuple[str, ...], received: set[str]
) -> tuple[tuple[Member, ...], tuple[Beat, ...]]:
    """The records and beats a peer wanted, minus records it just sent us itself."""
    records: list[Member] = []
    beats: list[Beat] = []
    for item in want:
        name = item.removesuffix(WANT_CERT).removesuffix(WANT_BEAT)
        m = cmap.get(name)
        if m is None or m.proof is None or m.state is State.DEAD:
            continue  # our own judgement never travels
        if name not in received and not item.endswith(WANT_BEAT):
            records.append(
                m
                if item.endswith(WANT_CERT)
                else dataclasses.replace(m, proof=dataclasses.replace(m.proof, cert=b""))
            )
        b = cmap.beat_of(name)
        if b is not None and b.incarnation == m.incarnation:
            beats.append(b)
    return tuple(records), tuple(beats)
