"""Certificates cryptography cannot parse (X.509 version 42, two SAN extensions, an unknown
signature algorithm with the CA's issuer name; tests/tyd/badcerts.py), carried by an insider
in otherwise well-formed signed entries: relayed in a SYNC, as the sender's own entry, and in
the WELCOME of a rogue endpoint that a joining node asks first. Every one is refused as
`bad_cert` on real daemons on loopback, the joining node joins through a real member, and no
daemon counts an internal error (issue 19: such a WELCOME used to kill the join task)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path

from badcerts import malformed_certs
from helpers import CLUSTER, address, converged, exchange, name, node_config, wait_for
from test_insider import INSIDER, TIMES, creds, entry, forge, me, sync

from builder.pki import Pki
from tyd import codec
from tyd.codec import Kind
from tyd.daemon import Node
from tyd.member import Member
from tyd.tls import pem_cert_der, server_context
from tyd.transport import close, read_message, write_message


def carrying(pki: Pki, m: Member, der: bytes) -> Member:
    """An entry signed with the insider's key that carries `der` as its certificate."""
    forged = forge(pki, dataclasses.replace(m, fingerprint=hashlib.sha256(der).hexdigest()))
    assert forged.proof is not None
    return dataclasses.replace(forged, proof=dataclasses.replace(forged.proof, cert=der))


def as_sender(pki: Pki, der: bytes) -> Member:
    """The insider's own entry (its real fingerprint, so TLS identity passes) whose record
    carries the unparsable certificate."""
    m = me(pki)
    assert m.proof is not None
    return dataclasses.replace(m, proof=dataclasses.replace(m.proof, cert=der))


async def rogue_endpoint(
    pki: Pki, port: int, welcome: tuple[Member, ...], asked: list[str]
) -> asyncio.Server:
    """A tyd endpoint of the insider's own at its address: it answers every HELLO with
    `welcome`, whatever it carries."""
    tls = node_config(pki, INSIDER, port, pki.paths.root).tls

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            msg = await read_message(reader, 5)
            asked.append(msg.sender.name if msg.sender else "?")
            await write_message(writer, codec.welcome(welcome), 5)
        finally:
            await close(writer, 5)

    return await asyncio.start_server(serve, address(INSIDER), port, ssl=server_context(tls))


def test_unparsable_certificates_are_refused_as_bad_cert_and_a_node_still_joins(
    pki: Pki, port: int, run_dir: Path
) -> None:
    ca_key, _ = pki.ca()
    bad = malformed_certs(pem_cert_der(creds(pki, INSIDER)[0]), ca_key)

    async def scenario() -> None:
        nodes = {i: Node(node_config(pki, i, port, run_dir, **TIMES)) for i in (1, 3)}
        rogue: asyncio.Server | None = None
        try:
            await asyncio.gather(*(n.start() for n in nodes.values()))
            await wait_for(lambda: converged(nodes.values(), {name(1), name(3)}), 10, "2 members")
            n1 = nodes[1]

            # relayed: three fake members, one per certificate, twice (the second time the
            # cached refusal answers)
            relayed = tuple(
                carrying(pki, entry(50 + k, name=f"evil-{case.replace('_', '-')}"), der)
                for k, (case, der) in enumerate(bad.items())
            )
            for round_ in (1, 2):
                reply = await sync(pki, port, relayed)
                assert reply is not None and reply.kind is Kind.MAP
                await wait_for(
                    lambda r=round_: n1.refusals["bad_cert"] == 3 * r,
                    10,  # type: ignore[misc]
                    f"round {round_}: 3 entries refused as bad_cert",
                )

            # as the sender, in a HELLO and in a SYNC
            for case, der in bad.items():
                for make in (codec.hello, lambda c, s: codec.sync(c, s, ())):
                    before = n1.refusals["bad_cert"]
                    payload = codec.encode(make(CLUSTER, as_sender(pki, der)))
                    raw = await exchange(
                        port, address(INSIDER), creds(pki, INSIDER), payload, pki.paths.ca_cert
                    )
                    answer = codec.decode(raw)
                    assert answer.kind is Kind.REFUSED and "bad_cert" in answer.reason, case
                    assert n1.refusals["bad_cert"] == before + 1, case

            # a rogue endpoint welcomes a joining node with the three, and node01's real entry
            real = await sync(pki, port, ())
            assert real is not None
            real1 = next(m for m in real.members if m.name == name(1))
            asked: list[str] = []
            rogue = await rogue_endpoint(pki, port, (*relayed, real1), asked)
            fresh = Node(node_config(pki, 5, port, run_dir, seeds=(INSIDER, 1), **TIMES))
            nodes[5] = fresh
            await fresh.start()
            want = {name(1), name(3), name(5)}
            await wait_for(
                lambda: converged(nodes.values(), want), 30, "the fresh node to join through node01"
            )
            assert asked and asked[0] == name(5), "the rogue welcomed it first"
            assert fresh.refusals["bad_cert"] == 3
            for n in nodes.values():
                assert n.counters["internal_errors"] == 0, n.cfg.node
                assert not any(m.startswith("evil") for m in n.live_names())
        finally:
            if rogue is not None:
                rogue.close()
            await asyncio.gather(*(n.shutdown(leave=False) for n in nodes.values()))

    asyncio.run(scenario())


def test_the_three_certificates_really_are_unparsable(pki: Pki) -> None:
    """The fixture's own check: cryptography raises for each (the bug this guards)."""
    from cryptography import x509

    ca_key, _ = pki.ca()
    for case, der in malformed_certs(pem_cert_der(creds(pki, INSIDER)[0]), ca_key).items():
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.extensions  # noqa: B018 - parsing is lazy
            cert.signature_hash_algorithm  # noqa: B018
        except Exception:  # noqa: BLE001 - any parser failure is what we want here
            continue
        raise AssertionError(f"{case}: cryptography parsed it")
