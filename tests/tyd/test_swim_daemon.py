"""Swim gossip between real daemons on loopback: a steady cluster probes and sends no
records; a killed member is detected (direct and indirect probes fail), accused and removed
everywhere; an insider (node02's certificate and key) that accuses a live member over and
over cannot remove it (the accused refutes each time), and cannot accuse in another's name."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from pathlib import Path
from typing import Any

from helpers import (
    CLUSTER,
    address,
    converged,
    increase,
    name,
    node_config,
    steady_cluster,
    wait_for,
)
from test_gossip_daemon import INSIDER, creds, insider

from builder.pki import Pki
from tyd import codec
from tyd.codec import BUCKETS, Kind, Message
from tyd.daemon import Node
from tyd.member import Accusation, Member, State
from tyd.transport import close, read_message, write_message

# slow enough for a loaded machine: an accusation here would be the machine, not the protocol
# (suspicion lasts remove_after: 8 s for a refutation to come back on a busy 2-core host)
TIMES: dict[str, Any] = {
    "heartbeat_seconds": 0.25,
    "suspect_after_seconds": 2.0,
    "remove_after_seconds": 8.0,
    "io_timeout_seconds": 8.0,
    "gossip": "swim",
}


async def swap_with(
    pki: Pki, port: int, me: Member, accusations: tuple[Accusation, ...], target: int = 1
) -> Message | None:
    """The insider's PROBE with buckets that differ everywhere, then a SWAP carrying
    `accusations`; returns the GIVE (None if the exchange failed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(pki.paths.ca_cert))
    ctx.load_cert_chain(*(str(p) for p in creds(pki, INSIDER)))
    try:
        reader, writer = await asyncio.open_connection(
            address(target), port, ssl=ctx, local_addr=(address(INSIDER), 0)
        )
    except (OSError, ssl.SSLError):
        return None
    try:
        await write_message(writer, codec.probe(CLUSTER, me, ("f" * 16,) * BUCKETS), 5)
        ack = await read_message(reader, 5)
        if ack.kind is not Kind.ACK or not ack.diff:
            return None
        await write_message(writer, codec.swap((), accusations, ()), 5)
        return await read_message(reader, 5)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
        return None
    finally:
        await close(writer, 5)


def test_a_steady_cluster_probes_and_sends_no_records(pki: Pki, port: int, run_dir: Path) -> None:
    before, after = steady_cluster(pki, port, run_dir, "swim", TIMES)
    more = increase(before, after, "probes")
    assert all(k >= 5 for k in more), more  # one a tick, less on a loaded machine
    assert all(c.get("beats_in", 0) == c.get("accused", 0) == 0 for c in after), after


def test_a_killed_member_is_detected_accused_and_removed_everywhere(
    pki: Pki, port: int, run_dir: Path
) -> None:
    async def scenario() -> None:
        nodes = [Node(node_config(pki, i, port, run_dir, **TIMES)) for i in (1, 3, 4, 5)]
        try:
            await asyncio.gather(*(n.start() for n in nodes))
            await wait_for(lambda: converged(nodes, {n.cfg.node for n in nodes}), 10, "4")
            killed = nodes.pop()
            await killed.shutdown(leave=False)  # no LEAVE: it just stops answering
            rest = {n.cfg.node for n in nodes}
            await wait_for(lambda: converged(nodes, rest), 30, "node05 removed everywhere")
            assert sum(n.counters["accused"] for n in nodes) >= 1
            assert sum(n.counters["probes_indirect"] for n in nodes) >= 1
            assert all(n.map.get(name(5)).state is State.DEAD for n in nodes)  # type: ignore[union-attr]
            assert all(n.counters["internal_errors"] == 0 for n in nodes)
        finally:
            await asyncio.gather(*(n.shutdown(leave=False) for n in nodes))

    asyncio.run(scenario())


def test_a_lying_insider_cannot_remove_a_live_member(pki: Pki, port: int, run_dir: Path) -> None:
    async def scenario() -> None:
        nodes = {i: Node(node_config(pki, i, port, run_dir, **TIMES)) for i in (1, 3, 4)}
        try:
            await asyncio.gather(*(n.start() for n in nodes.values()))
            good = {name(1), name(3), name(4)}
            await wait_for(lambda: converged(nodes.values(), good), 10, "3 members")
            n1, n3 = nodes[1], nodes[3]
            me, s = insider(pki)
            # an accusation in node04's name, signed with the insider's key: forged
            real3 = n1.map.get(name(3))
            assert real3 is not None
            fake = dataclasses.replace(s.accuse(me, real3), accuser=name(4))
            before = n1.counters["forged"]
            assert await swap_with(pki, port, me, (fake,)) is not None
            await wait_for(lambda: n1.counters["forged"] == before + 1, 5, "refused")
            assert n1.map.accusation_of(name(3)) is None
            # its own accusation of node03's current record, again and again, for longer than
            # a suspicion lasts: node03 refutes each one with a newer record and stays
            deadline = time.monotonic() + 2 * n1.map.suspicion_seconds()
            lies = 0
            while time.monotonic() < deadline:
                current = n1.map.get(name(3))
                assert current is not None and current.state is State.ALIVE
                if n1.map.accusation_of(name(3)) is None:
                    got = await swap_with(pki, port, me, (s.accuse(me, current),))
                    lies += got is not None
                for n in nodes.values():
                    assert good <= n.live_names(), (n.cfg.node, n.live_names())
                await asyncio.sleep(0.1)
            assert lies >= 3 and n3.map.refuted >= 3, (lies, n3.map.refuted)
            assert n1.counters["accusations_in"] >= 3
            await wait_for(
                lambda: all(n.map.accusation_of(name(3)) is None for n in nodes.values()),
                10,
                "the last lie refuted everywhere",
            )
            assert all(good <= n.live_names() for n in nodes.values())
            assert all(n.counters["internal_errors"] == 0 for n in nodes.values())
        finally:
            await asyncio.gather(*(n.shutdown(leave=False) for n in nodes.values()))

    asyncio.run(scenario())
