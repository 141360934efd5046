"""Shared helpers for the tyd tests: a cluster PKI in a tmp dir, configs, nodes on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from builder.model import KeyType
from builder.pki import Identity, Pki
from tyd import config
from tyd.config import Config
from tyd.daemon import Node
from tyd.member import Member

CLUSTER = "chaos-lab"
NOW = dt.datetime.now(dt.UTC)


def address(i: int) -> str:
    return f"127.0.0.{10 + i}"


def name(i: int) -> str:
    return f"node{i:02d}"


def make_pki(root: Path, count: int, cluster: str = CLUSTER) -> Pki:
    pki = Pki(root, KeyType.ED25519)
    pki.init_ca(cluster, NOW, 30)
    for i in range(1, count + 1):
        pki.issue(
            Identity(name(i), f"{name(i)}.lab.example", ipaddress.IPv4Address(address(i))),
            cluster,
            NOW,
            30,
        )
    return pki


def raw_config(
    pki: Pki, i: int, port: int, run_dir: Path, seeds: Iterable[int] = (1,), **overrides: Any
) -> dict[str, Any]:
    paths = pki.paths
    raw: dict[str, Any] = {
        "cluster": CLUSTER,
        "node": name(i),
        "address": address(i),
        "subnet": "127.0.0.0/24",
        "port": port,
        "seeds": [{"name": name(s), "address": address(s)} for s in seeds],
        "heartbeat_seconds": 0.2,
        "suspect_after_seconds": 0.8,
        "remove_after_seconds": 1.6,
        "tls": {
            "cert": str(paths.node_cert(name(i))),
            "key": str(paths.node_key(name(i))),
            "ca": str(paths.ca_cert),
            "crl": str(paths.crl),
        },
        "exports": {
            k: str(run_dir / name(i) / f)
            for k, f in (
                ("json", "map.json"),
                ("mosix", "mosix.map"),
                ("hostfile", "hostfile"),
                ("status", "status.json"),
            )
        },
        "hooks": {
            "vici_socket": None,
            "nft_table": "inet chaos",
            "nft_set": None,
            "static_peers": [],
            "ipsec": {
                "scope": "all",
                "ike_proposals": ["aes128gcm16-prfsha256-x25519"],
                "esp_proposals": ["aes128gcm16-x25519"],
                "rekey_minutes": 60,
                "dpd_seconds": 30,
                "protected_ports": [port],
            },
        },
        "io_timeout_seconds": 2.0,
    }
    raw.update(overrides)
    return raw


def node_config(
    pki: Pki, i: int, port: int, run_dir: Path, seeds: Iterable[int] = (1,), **overrides: Any
) -> Config:
    return config.parse(
        json.loads(json.dumps(raw_config(pki, i, port, run_dir, seeds, **overrides))), f"node{i}"
    )


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `predicate` holds; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def converged(nodes: Iterable[Node], expected: set[str]) -> bool:
    return all(n.live_names() == expected and n.joined for n in nodes)


async def exchange(
    port: int,
    source: str,
    cert: tuple[Path, Path] | None,
    payload: bytes | None,
    ca: Path,
    target: int = 1,
) -> bytes:
    """Connect to node `target` as `source` (mutual TLS with `cert`, or none), send
    `payload` as is, return whatever comes back: the attacker's client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        reader, writer = await asyncio.open_connection(
            address(target), port, ssl=ctx, local_addr=(source, 0)
        )
    except (OSError, ssl.SSLError):
        return b""
    try:
        if payload:
            writer.write(payload)
            await writer.drain()
        return await asyncio.wait_for(reader.read(8 << 20), 5)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
        return b""
    finally:
        writer.close()


def signed_by(cert: tuple[Path, Path], m: Member) -> Member:
    """m signed with the key of `cert` (certificate, key): what anyone holding that pair can
    send as its own entry."""
    from tyd.record import Signer
    from tyd.tls import pem_cert_der

    return Signer(CLUSTER, cert[1], pem_cert_der(cert[0]))(m)


Counts = list[dict[str, int]]


async def _steady(
    pki: Pki, port: int, run_dir: Path, times: dict[str, Any]
) -> tuple[Counts, Counts]:
    nodes = [Node(node_config(pki, i, port, run_dir, **times)) for i in (1, 3, 4, 5)]
    want = {n.cfg.node for n in nodes}
    try:
        await asyncio.gather(*(n.start() for n in nodes))
        await wait_for(lambda: converged(nodes, want), 10, "4 members")
        await asyncio.sleep(1.0)
        before = [dict(n.counters) for n in nodes]
        await asyncio.sleep(15 * nodes[0].cfg.heartbeat_seconds)
        after = [dict(n.counters) for n in nodes]
        assert converged(nodes, want)
        assert all(v.state == "alive" for n in nodes for v in n.map.view())
        return before, after
    finally:
        await asyncio.gather(*(n.shutdown(leave=False) for n in nodes))


def steady_cluster(
    pki: Pki, port: int, run_dir: Path, gossip: str, times: dict[str, Any]
) -> tuple[Counts, Counts]:
    """Four daemons with this gossip mode, converged, then left alone for 15 heartbeats: the
    map stays whole and alive, no record travels, nothing is forged or fails. Returns each
    node's counters before and after those heartbeats, for the mode's own checks."""
    before, after = asyncio.run(_steady(pki, port, run_dir, {**times, "gossip": gossip}))
    records = [c.get("records_in", 0) for c in before]
    assert [c.get("records_in", 0) for c in after] == records, "no record travels"
    assert all(c.get("forged", 0) == c.get("internal_errors", 0) == 0 for c in after), after
    return before, after


def increase(before: Counts, after: Counts, counter: str) -> list[int]:
    """Each node's increase of `counter` between two steady_cluster snapshots."""
    return [a.get(counter, 0) - b.get(counter, 0) for b, a in zip(before, after, strict=True)]
