"""Mass-boot benchmark: N tyd nodes in one process (one asyncio loop) on loopback with real
mutual TLS and certificates from the project's PKI, all joining at once through one seed.

    python3 bench/tyd_join.py                 # N = 10, 50, 200
    python3 bench/tyd_join.py --nodes 50 --heartbeat 1

Prints the time until every node is a Philip with the full map, and the connections and
messages each node handled up to then (the seed separately: it must not be the bottleneck);
first, what self-certifying records cost: signing an entry, verifying one (new certificate,
known certificate, already seen), and the size of a map of N signed entries on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.model import KeyType  # noqa: E402
from builder.pki import Identity, Pki  # noqa: E402
from tyd import codec, config  # noqa: E402
from tyd.daemon import Node  # noqa: E402
from tyd.member import Member, State  # noqa: E402
from tyd.record import Freshness, Signer, Verifier, load_trust  # noqa: E402
from tyd.tls import pem_cert_der  # noqa: E402

OUTBOUND = 48


def address(i: int) -> str:
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def node_name(i: int) -> str:
    return f"node{i:03d}"


def make_configs(root: Path, n: int, port: int, heartbeat: float) -> list[config.Config]:
    now = dt.datetime.now(dt.UTC)
    pki = Pki(root / "pki", KeyType.ED25519)
    pki.init_ca("bench", now, 2)
    cfgs = []
    for i in range(n):
        pki.issue(
            Identity(node_name(i), f"{node_name(i)}.bench", ipaddress.IPv4Address(address(i))),
            "bench",
            now,
            2,
        )
        raw = {
            "cluster": "bench",
            "node": node_name(i),
            "address": address(i),
            "subnet": "127.0.0.0/16",
            "port": port,
            "seeds": [{"name": node_name(0), "address": address(0)}],
            "heartbeat_seconds": heartbeat,
            "suspect_after_seconds": 30 * heartbeat,
            "remove_after_seconds": 60 * heartbeat,
            "io_timeout_seconds": 60,
            "tls": {
                "cert": str(pki.paths.node_cert(node_name(i))),
                "key": str(pki.paths.node_key(node_name(i))),
                "ca": str(pki.paths.ca_cert),
                "crl": str(pki.paths.crl),
            },
            "exports": {
                k: str(root / "run" / node_name(i) / k)
                for k in ("json", "mosix", "hostfile", "status")
            },
            "hooks": {
                "vici_socket": None,
                "nft_table": "inet chaos",
                "nft_set": None,
                "static_peers": [],
                "ipsec": {
                    "scope": "all",
                    "ike_proposals": [],
                    "esp_proposals": [],
                    "rekey_minutes": 60,
                    "dpd_seconds": 30,
                    "protected_ports": [port],
                },
            },
        }
        cfgs.append(config.parse(json.loads(json.dumps(raw)), f"bench:{node_name(i)}"))
    return cfgs


def _stats(values: list[int]) -> str:
    return (
        f"mean {statistics.mean(values):7.1f}  max {max(values):5d}  "
        f"(per peer {statistics.mean(values) / max(1, len(values) - 1):.2f})"
    )


async def run(n: int, heartbeat: float, timeout: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tyd-bench-") as tmp:
        cfgs = make_configs(Path(tmp), n, random.randint(20000, 45000), heartbeat)
        # One CPU for all N nodes: they share one bound on handshakes in flight, as N real
        # nodes each bound their own (tyd.daemon.MAX_OUTBOUND).
        outbound = asyncio.Semaphore(OUTBOUND)
        nodes = [Node(c, write_files=False, outbound=outbound) for c in cfgs]
        expected = {c.node for c in cfgs}
        start, cpu0 = time.monotonic(), time.process_time()
        await asyncio.gather(*(node.start() for node in nodes))
        try:
            while not all(x.joined and x.live_names() == expected for x in nodes):
                if time.monotonic() - start > timeout:
                    missing = sum(x.live_names() != expected for x in nodes)
                    raise SystemExit(
                        f"N={n}: no convergence after {timeout}s "
                        f"({missing} nodes with an incomplete map)"
                    )
                await asyncio.sleep(0.05)
            elapsed, cpu = time.monotonic() - start, time.process_time() - cpu0
        finally:
            await asyncio.gather(*(node.shutdown(leave=False) for node in nodes))
        seed, rest = nodes[0], nodes[1:]
        conns = [x.counters["conns_in"] + x.counters["conns_out"] for x in rest]
        msgs = [x.counters["msgs_in"] + x.counters["msgs_out"] for x in rest]
        failures = {
            k: sum(x.counters[k] for x in nodes)
            for k in (
                "refused",
                "malformed",
                "out_of_order",
                "timeouts",
                "unreachable",
                "dropped",
                "busy",
                "busy_source",
                "forged",
                "stale",
                "internal_errors",
            )
        }
        failures = {k: v for k, v in failures.items() if v}
        print(
            f"N={n:4d}  converged in {elapsed:7.2f} s  (heartbeat {heartbeat} s, "
            f"{elapsed / heartbeat:.1f} ticks)"
        )
        total_conns = sum(x.counters["conns_out"] for x in nodes)
        print(
            f"        CPU {cpu:7.1f} s for {total_conns} TLS connections "
            f"({1000 * cpu / max(1, total_conns):.1f} ms each, both ends; all nodes share "
            "one core here)"
        )
        print(f"        connections/node   {_stats(conns)}")
        print(f"        messages/node      {_stats(msgs)}")
        print(
            f"        seed: {seed.counters['conns_in'] + seed.counters['conns_out']} "
            f"connections, {seed.counters['msgs_in'] + seed.counters['msgs_out']} messages; "
            f"failed exchanges (all nodes): {failures or 'none'}"
        )
        return {
            "n": n,
            "seconds": elapsed,
            "cpu": cpu,
            "conns": statistics.mean(conns),
            "msgs": statistics.mean(msgs),
        }


def record_costs(n: int) -> None:
    """Sign n entries (n nodes' keys), verify them three ways, size the map they make."""
    with tempfile.TemporaryDirectory(prefix="tyd-records-") as tmp:
        cfgs = make_configs(Path(tmp), n, 7411, 1.0)
        signers = [Signer(c.cluster, c.tls.key, pem_cert_der(c.tls.cert)) for c in cfgs]
        now_ms = int(time.time() * 1000)
        plain = [Member(c.node, c.address, "", State.ALIVE, now_ms, 1) for c in cfgs]
        t0 = time.perf_counter()
        signed = [s(m) for s, m in zip(signers, plain, strict=True)]
        sign_us = 1e6 * (time.perf_counter() - t0) / n
        frame = codec.encode(codec.map_reply(tuple(signed)))
        claims = codec.decode(frame).members
        trust = load_trust(
            "bench", cfgs[0].tls.ca, cfgs[0].tls.crl, cfgs[0].subnet, None, Freshness(30, 60)
        )
        verifier = Verifier(trust)
        t0 = time.perf_counter()
        for c in claims:
            verifier.verify(c)
        first_us = 1e6 * (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        for c in claims:
            verifier.verify(c)
        seen_us = 1e6 * (time.perf_counter() - t0) / n
        again = codec.decode(
            codec.encode(codec.map_reply(tuple(s(m) for s, m in zip(signers, plain, strict=True))))
        ).members  # next heartbeat: certificates known
        t0 = time.perf_counter()
        for c in again:
            verifier.verify(c)
        known_us = 1e6 * (time.perf_counter() - t0) / n
        t0 = time.perf_counter()
        codec.decode(frame)
        decode_ms = 1000 * (time.perf_counter() - t0)
        print(
            f"records: sign {sign_us:.0f} us; verify {first_us:.0f} us (new certificate), "
            f"{known_us:.0f} us (known certificate), {seen_us:.0f} us (seen before); a map "
            f"of {n} signed entries is {len(frame) / 1024:.0f} KiB on the wire "
            f"({len(frame) // n} bytes each), decoded in {decode_ms:.1f} ms"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--nodes", type=int, action="append", help="cluster size (repeatable; default 10, 50, 200)"
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        help="seconds per gossip tick (default max(1, 0.12 N): all N nodes share "
        "one CPU here, and N * fanout / heartbeat gossip handshakes per second "
        "must leave most of it to the joins)",
    )
    p.add_argument("--timeout", type=float, default=1800.0)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    record_costs(500)
    for n in args.nodes or [10, 50, 200]:
        asyncio.run(run(n, args.heartbeat or max(1.0, 0.12 * n), args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
