"""Unauthenticated, impersonating or malformed clients are refused and counted, and the
daemon keeps serving good members."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import struct
import time
from pathlib import Path

import pytest
from helpers import (
    NOW,
    address,
    converged,
    exchange,
    make_pki,
    name,
    node_config,
    signed_by,
    wait_for,
)

from builder.pki import Pki
from tyd import codec
from tyd.codec import Kind
from tyd.daemon import Node
from tyd.member import Member, State


def hello_from(
    i: int,
    cert: tuple[Path, Path],
    claimed_address: str | None = None,
    claimed_name: str | None = None,
) -> bytes:
    """A HELLO whose sender entry is signed with the key of `cert` (what a client holding
    that certificate and key can send)."""
    me = Member(
        claimed_name or name(i),
        ipaddress.IPv4Address(claimed_address or address(i)),
        "",
        State.ALIVE,
        int(time.time() * 1000),
        0,
    )
    return codec.encode(codec.hello("chaos-lab", signed_by(cert, me)))


def is_welcome(reply: bytes) -> bool:
    try:
        return codec.decode(reply).kind is Kind.WELCOME
    except Exception:
        return False


@pytest.fixture
def cluster_io(pki: Pki, port: int, run_dir: Path) -> dict[str, object]:
    return {"pki": pki, "port": port, "run_dir": run_dir}


BAD_TLS = ["foreign-ca", "selfsigned", "expired", "revoked"]


def test_bad_clients_are_refused_counted_and_the_daemon_keeps_serving(
    pki: Pki, bad_certs: dict[str, tuple[Path, Path]], port: int, run_dir: Path
) -> None:
    ca = pki.paths.ca_cert
    good5 = (pki.paths.node_cert(name(5)), pki.paths.node_key(name(5)))

    async def scenario() -> None:
        nodes = [Node(node_config(pki, i, port, run_dir, io_timeout_seconds=0.5)) for i in (1, 2)]
        try:
            await asyncio.gather(*(n.start() for n in nodes))
            await wait_for(lambda: converged(nodes, {name(1), name(2)}), 10, "2 nodes")
            n1 = nodes[0]

            async def refused(
                cert: tuple[Path, Path] | None,
                payload: bytes | None,
                source: str,
                counter: str = "refused",
            ) -> bytes:
                before = n1.counters[counter]
                reply = await exchange(port, source, cert, payload, ca)
                assert not is_welcome(reply)
                await wait_for(
                    lambda: n1.counters[counter] == before + 1, 3, f"{counter} to be counted"
                )
                return reply

            # No certificate at all, then four certificates TLS itself must reject.
            await refused(None, hello_from(5, good5), address(5))
            for case in BAD_TLS:
                cert = bad_certs[case]
                await refused(cert, hello_from(5, cert), address(5))
            # A good certificate claiming another node's address, name, or source.
            reply = await refused(
                good5, hello_from(5, good5, claimed_address=address(3)), address(5)
            )
            assert codec.decode(reply).kind is Kind.REFUSED
            await refused(good5, hello_from(5, good5, claimed_name=name(3)), address(5))
            await refused(good5, hello_from(5, good5), address(3))
            # Malformed, oversized, out of order, silent.
            await refused(good5, b"GET / HTTP/1.0\r\n\r\n", address(5), "malformed")
            await refused(
                good5, struct.pack(">2sBBI", b"TY", 1, 1, 1 << 30), address(5), "malformed"
            )
            await refused(good5, codec.encode(codec.welcome(())), address(5), "out_of_order")
            await refused(good5, None, address(5), "timeouts")

            assert n1.counters["refused"] == 1 + len(BAD_TLS) + 3
            assert name(5) not in n1.live_names() and name(3) not in n1.live_names()
            assert n1.counters["internal_errors"] == 0

            late = Node(node_config(pki, 6, port, run_dir))  # a good member still gets in
            nodes.append(late)
            await late.start()
            await wait_for(
                lambda: converged(nodes, {name(1), name(2), name(6)}),
                10,
                "a good member to join after the attacks",
            )
        finally:
            await asyncio.gather(*(n.shutdown(leave=False) for n in nodes))

    asyncio.run(scenario())


def test_connection_limit_keeps_memory_bounded(pki: Pki, port: int, run_dir: Path) -> None:
    async def scenario() -> None:
        node = Node(node_config(pki, 1, port, run_dir, max_connections=8, io_timeout_seconds=1.0))
        await node.start()
        idle = []
        try:
            for _ in range(12):  # plain TCP, never starting TLS
                idle.append(
                    await asyncio.open_connection(address(1), port, local_addr=(address(7), 0))
                )
            await wait_for(lambda: node.counters["busy"] == 4, 3, "4 connections turned away")
            await wait_for(lambda: node.counters["refused"] == 8, 3, "8 TLS handshakes to time out")
        finally:
            for _, w in idle:
                w.close()
            await node.shutdown(leave=False)

    asyncio.run(scenario())


def test_a_member_revoked_while_running_is_refused_once_the_crl_changes(
    tmp_path: Path, port: int, run_dir: Path
) -> None:
    """tyd rereads the CRL when it changes (or on SIGHUP): the revoked member's next
    connection fails its TLS handshake and it leaves the map; nobody restarts anything."""
    pki = make_pki(tmp_path / "pki", 3)
    key2 = tmp_path / "node02.key"  # what the member holds: revoking deletes the PKI's copy
    key2.write_bytes(pki.paths.node_key(name(2)).read_bytes())
    cert2 = (pki.paths.node_cert(name(2)), key2)

    async def scenario() -> None:
        nodes = [Node(node_config(pki, i, port, run_dir)) for i in (1, 2)]
        try:
            await asyncio.gather(*(n.start() for n in nodes))
            await wait_for(lambda: converged(nodes, {name(1), name(2)}), 10, "2 nodes")
            n1 = nodes[0]
            assert n1.counters["tls_reloads"] == 0
            assert is_welcome(
                await exchange(port, address(2), cert2, hello_from(2, cert2), pki.paths.ca_cert)
            )
            revoked_at = NOW + dt.timedelta(minutes=1)
            pki.revoke(name(2), revoked_at, 30)  # writes the new CRL that node01 reads
            await wait_for(lambda: n1.counters["tls_reloads"] == 1, 5, "the CRL reload")
            refused_before = n1.counters["refused"]
            revoked = next(pki.paths.nodes.glob(f"{name(2)}.*.revoked"))
            reply = await exchange(
                port, address(2), (revoked, key2), hello_from(2, (revoked, key2)), pki.paths.ca_cert
            )
            assert not is_welcome(reply)
            await wait_for(lambda: n1.counters["refused"] > refused_before, 3, "the refusal")
            await wait_for(
                lambda: name(2) not in n1.live_names(),
                10,
                "the revoked member to leave node01's map",
            )
            assert not n1.reload_trust(), "an unchanged CRL is not reloaded again"
            assert n1.reload_trust(force=True)  # SIGHUP
        finally:
            await asyncio.gather(*(n.shutdown(leave=False) for n in nodes))

    asyncio.run(scenario())
