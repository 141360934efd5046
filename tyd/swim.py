"""Swim gossip, pure: bucket digests of the map, and what a peer lacks in the buckets that differ.

The map is cut into codec.BUCKETS buckets by a hash of the member's name; a bucket's digest
is the XOR of its entries' hashes, an entry's hash covers its record's version, state and
certificate (not its stamp: a member signing the same record again is no news) and the
accusation it carries. A PROBE carries the BUCKETS digests, so a steady cluster exchanges
the same few hundred bytes a tick whatever its size; only where a bucket differs do the
two sides compare summaries (`name:rev:0` per member of that bucket) and swap the records
and accusations that differ. Liveness is the probe itself (tyd.daemon): the TLS exchange
with a member proves it is there, and no member signs anything every tick.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

from .codec import BUCKETS, WANT_CERT, Have
from .gossip import NO_CERT
from .member import Accusation, Member, State
from .membership import ClusterMap


@functools.lru_cache(maxsize=8192)
def bucket_of(name: str) -> int:
    return hashlib.sha256(name.encode()).digest()[0] % BUCKETS


def rev(cmap: ClusterMap, m: Member) -> str:
    """Which record of a member this is, and whether (and by whom) it is accused."""
    return _hashed(cmap, m)[0]


def _hashed(cmap: ClusterMap, m: Member) -> tuple[str, int]:
    a = cmap.accusation_of(m.name)
    sig = a.signature if a else b""
    return _entry(m.name, m.incarnation, m.heartbeat, m.state.value, m.fingerprint, sig)


# Records and accusations are immutable and a steady map holds the same ones tick after tick:
# each entry is hashed once, not on every probe (the map's size bounds what stays cached).
@functools.lru_cache(maxsize=1 << 15)
def _entry(
    name: str, incarnation: int, heartbeat: int, state: str, fp: str, accusation: bytes
) -> tuple[str, int]:
    """An entry's rev and its share of its bucket's digest (`accusation`: the signature of
    the accusation it carries, or b"")."""
    data = f"{name}:{incarnation}:{heartbeat}:{state}:{fp}".encode()
    r = hashlib.sha256(data + accusation).hexdigest()[:8]
    return r, int(hashlib.sha256(f"{name}:{r}".encode()).hexdigest()[:16], 16)


def buckets(cmap: ClusterMap) -> tuple[str, ...]:
    acc = [0] * BUCKETS
    for m in cmap.members():
        acc[bucket_of(m.name)] ^= _hashed(cmap, m)[1]
    return tuple(f"{x:016x}" for x in acc)


def diff(mine: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)


def summary(
    cmap: ClusterMap, which: tuple[int, ...], lacking_cert: frozenset[str] = frozenset()
) -> tuple[Have, ...]:
    """What we hold in the buckets `which`."""
    chosen = set(which)
    return tuple(
        Have(m.name, NO_CERT if m.name in lacking_cert else rev(cmap, m), 0)
        for m in cmap.members()
        if bucket_of(m.name) in chosen
    )


def _lean(m: Member) -> Member:
    if m.proof is None:
        return m
    return dataclasses.replace(m, proof=dataclasses.replace(m.proof, cert=b""))


def delta(
    cmap: ClusterMap, have: tuple[Have, ...], which: tuple[int, ...], peer: str
) -> tuple[tuple[Member, ...], tuple[Accusation, ...]]:
    """What `peer` (its summary `have` of the buckets `which`) lacks there: records (with
    certificates where it lacks the member) and accusations; never its own record (it is its
    author), but an accusation of it, so that it refutes."""
    held = {h.name: h for h in have}
    chosen = set(which)
    records: list[Member] = []
    accusations: list[Accusation] = []
    for m in cmap.members():
        if bucket_of(m.name) not in chosen:
            continue
        h = held.get(m.name)
        if h is not None and h.rev == rev(cmap, m):
            continue
        if m.name != peer and m.proof is not None:
            records.append(m if h is None or h.rev == NO_CERT else _lean(m))
        a = cmap.accusation_of(m.name)
        if a is not None:
            accusations.append(a)
    return tuple(records), tuple(accusations)


def wanted(cmap: ClusterMap, have: tuple[Have, ...]) -> tuple[str, ...]:
    """What the peer's summary holds that we lack or hold otherwise (`name+`: we lack the
    member, send its certificate too)."""
    out = []
    for h in have:
        if h.rev == NO_CERT:
            continue
        if h.name == cmap.me.name:  # its copy of us differs: an accusation to refute?
            if h.rev != rev(cmap, cmap.me):
                out.append(h.name)
            continue
        m = cmap.get(h.name)
        if m is None or m.state is State.DEAD:
            out.append(h.name + WANT_CERT)
        elif h.rev != rev(cmap, m):
            out.append(h.name)
    return tuple(out)


def echoes(cmap: ClusterMap, records: tuple[Member, ...]) -> set[str]:
    """Of the records a peer just sent (and we merged), those we now hold as it sent them:
    no need to send them back. An older copy it sent gets ours in return."""
    out = set()
    for r in records:
        held = cmap.get(r.name)
        if held is not None and held.version == r.version and held.state is r.state:
            out.add(r.name)
    return out


def given(
    cmap: ClusterMap, want: tuple[str, ...], received: set[str], peer: str
) -> tuple[tuple[Member, ...], tuple[Accusation, ...]]:
    """The records and accusations a peer wanted, minus those of `received` (swim.echoes:
    it sent us the very record)."""
    records: list[Member] = []
    accusations: list[Accusation] = []
    for item in want:
        name = item.removesuffix(WANT_CERT)
        m = cmap.get(name)
        if m is None or m.proof is None or m.state is State.DEAD:
            continue  # our own judgement never travels
        if name not in received and name != peer:  # never its own record (its author)
            records.append(m if item.endswith(WANT_CERT) else _lean(m))
        a = cmap.accusation_of(name)
        if a is not None:
            accusations.append(a)
    return tuple(records), tuple(accusations)
