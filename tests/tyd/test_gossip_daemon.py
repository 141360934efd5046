"""Digest gossip between real daemons on loopback: a steady cluster sends heartbeats and no
records; an insider (node02's certificate and key) asking with a summary gets only what it
lacks; its forged heartbeats are refused; `gossip: full` still forms the map."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from pathlib import Path
from typing import Any

from helpers import (
    CLUSTER,
    address,
    converged,
    exchange,
    increase,
    name,
    node_config,
    signed_by,
    steady_cluster,
    wait_for,
)

from builder.pki import Pki
from tyd import codec, gossip
from tyd.codec import Have, Kind, Message
from tyd.daemon import Node
from tyd.member import Beat, Member, State
from tyd.record import Signer
from tyd.tls import pem_cert_der

INSIDER = 2
# slow enough for a loaded machine: a suspect here would be the machine, not the protocol
TIMES: dict[str, Any] = {
    "heartbeat_seconds": 0.25,
    "suspect_after_seconds": 2.0,
    "remove_after_seconds": 4.0,
    "gossip": "digest",
}


def creds(pki: Pki, i: int) -> tuple[Path, Path]:
    return pki.paths.node_cert(name(i)), pki.paths.node_key(name(i))


def insider(pki: Pki) -> tuple[Member, Signer]:
    s = Signer(CLUSTER, creds(pki, INSIDER)[1], pem_cert_der(creds(pki, INSIDER)[0]))
    m = Member(
        name(INSIDER),
        ipaddress.IPv4Address(address(INSIDER)),
        "",
        State.ALIVE,
        int(time.time() * 1000),
        1,
    )
    return signed_by(creds(pki, INSIDER), m), s


async def ask(
    pki: Pki,
    port: int,
    have: tuple[Have, ...],
    beat: Beat | None = None,
    sender: tuple[Member, Signer] | None = None,
) -> tuple[Message | None, int]:
    me, s = sender or insider(pki)
    payload = codec.encode(codec.digest(CLUSTER, me, beat or s.beat(me, 1), have))
    raw = await exchange(port, address(INSIDER), creds(pki, INSIDER), payload, pki.paths.ca_cert)
    try:
        return codec.decode(raw), len(raw)
    except Exception:
        return None, len(raw)


def test_a_steady_cluster_sends_heartbeats_and_no_records(
    pki: Pki, port: int, run_dir: Path
) -> None:
    before, after = steady_cluster(pki, port, run_dir, "digest", TIMES)
    more = increase(before, after, "beats_in")
    assert all(k >= 10 for k in more), more


def test_an_insider_gets_only_what_it_lacks_and_its_forged_beats_are_refused(
    pki: Pki, port: int, run_dir: Path
) -> None:
    async def scenario() -> None:
        nodes = {i: Node(node_config(pki, i, port, run_dir, gossip="digest")) for i in (1, 3)}
        try:
            await asyncio.gather(*(n.start() for n in nodes.values()))
            await wait_for(lambda: converged(nodes.values(), {name(1), name(3)}), 10, "2 members")
            n1 = nodes[1]
            # holding all node01 holds (and itself): nothing but heartbeats comes back
            await ask(pki, port, ())  # node01 learns the insider
            have = gossip.summary(n1.map)
            reply, size = await ask(pki, port, have)
            assert reply is not None and reply.kind is Kind.DELTA
            assert reply.members == () and size < 1000, (reply.members, size)
            # lacking node03: its record comes, with its certificate; with rev "-" too
            without3 = tuple(h for h in have if h.name != name(3))
            reply, _ = await ask(pki, port, without3)
            assert reply is not None and [m.name for m in reply.members] == [name(3)]
            assert reply.members[0].proof.cert == pem_cert_der(creds(pki, 3)[0])  # type: ignore[union-attr]
            lean_ok = tuple(
                dataclasses.replace(h, rev="-") if h.name == name(3) else h for h in have
            )
            reply, _ = await ask(pki, port, lean_ok)
            assert reply is not None and reply.members[0].proof.cert  # type: ignore[union-attr]
            # its own beat with a signature of garbage
            me, s = insider(pki)
            forged_before = n1.counters["forged"]
            bad = dataclasses.replace(s.beat(me, 10**6), signature=b"\x01" * 64)
            await ask(pki, port, (), bad, (me, s))
            await wait_for(lambda: n1.counters["forged"] == forged_before + 1, 5, "refused")
            assert n1.refusals["bad_signature"] >= 1
            assert n1.map.beat_of(name(INSIDER)) is None  # its only beat was that one
            # node03's beat, signed by the insider, as if its own: a protocol violation
            real3 = n1.map.get(name(3))
            assert real3 is not None
            for_3 = dataclasses.replace(s.beat(real3, 10**6), name=name(3))
            before = n1.counters["out_of_order"]
            reply, _ = await ask(pki, port, (), for_3, (me, s))
            await wait_for(lambda: n1.counters["out_of_order"] == before + 1, 5, "refused")
            assert (n1.map.beat_of(name(3)) or Beat("", 0, 0, 0)).count < 10**6
            assert n1.counters["internal_errors"] == 0
        finally:
            await asyncio.gather(*(n.shutdown(leave=False) for n in nodes.values()))

    asyncio.run(scenario())


def test_full_gossip_still_forms_the_map(pki: Pki, port: int, run_dir: Path) -> None:
    async def scenario() -> None:
        nodes = [Node(node_config(pki, i, port, run_dir, gossip="full")) for i in (1, 3, 4)]
        try:
            await asyncio.gather(*(n.start() for n in nodes))
            await wait_for(lambda: converged(nodes, {name(1), name(3), name(4)}), 10, "3 members")
            assert all(n.counters["beats_in"] == 0 for n in nodes)  # whole records instead
            await nodes[2].shutdown(leave=True)
            await wait_for(lambda: converged(nodes[:2], {name(1), name(3)}), 5, "LEAVE")
        finally:
            await asyncio.gather(*(n.shutdown(leave=False) for n in nodes[:2]))

    asyncio.run(scenario())
