"""The enrollment service under hostile clients (issue 19): deep JSON is a refusal, not a
500; clients that dribble one byte at a time inside TLS are cut at the request deadline while
a real node enrolls; one address holding connections cannot take the room a node needs.
The service's internal_errors stays 0 throughout."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import statistics
import time
from collections.abc import Iterator

import pytest
from conftest import Lab, needs_swtpm, raw_post, tpm_ek_hash
from cryptography.hazmat.primitives import serialization

from builder.enroll import server as server_mod
from builder.enroll import service
from builder.enroll.swtpm import free_ports
from chaosnode.enrollment import MAX_BODY, START_PATH

DRIBBLERS = 200
SOURCES = 25  # 8 connections each: the per-source limit


def test_deep_json_is_malformed_not_an_internal_error(lab: Lab) -> None:
    body = b"[" * 7000 + b"]" * 7000
    assert len(body) < MAX_BODY
    status, reply = raw_post(lab, START_PATH, body)
    assert (status, reply["error"]) == (400, "malformed")
    status, reply = raw_post(lab, START_PATH, b'{"node": "a", "node": "b"}')
    assert (status, reply["error"]) == (400, "malformed") and "duplicate" in reply["reason"]
    assert lab.server.counters["internal_errors"] == 0
    assert lab.server.counters["refused_malformed"] == 2


@pytest.fixture
def strict(lab: Lab) -> Iterator[server_mod.EnrollServer]:
    """A second service on the lab's PKI and registry with a short request deadline and
    room for the dribblers; the lab's client is pointed at it."""
    settings = service.ServiceSettings(
        ipaddress.IPv4Address("127.0.0.1"),
        free_ports(1),
        rate_per_second=1000,
        burst=1000,
        request_seconds=3,
        max_connections=DRIBBLERS + 16,
    )
    server = server_mod.open_service(lab.cluster, lab.config, lab.pki, settings)
    server.start_background()
    lab.url_override = server.url
    try:
        yield server
    finally:
        server.stop()


async def dribble(port: int, source: str, ctx: ssl.SSLContext) -> float:
    """Send a request one byte a second; return how long after its first byte the server
    closed the connection."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, local_addr=(source, 0)
    )
    request = f"POST {START_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n".encode()
    first = time.monotonic()
    try:
        for k in range(600):  # 10 minutes of bytes if never cut
            writer.write(request[k : k + 1] if k < len(request) else b"{")
            await writer.drain()
            with_reply = asyncio.ensure_future(reader.read(1024))
            done, _ = await asyncio.wait({with_reply}, timeout=1)
            if done:
                if not with_reply.result():
                    return time.monotonic() - first
            else:
                with_reply.cancel()
    except (OSError, ssl.SSLError):
        return time.monotonic() - first
    finally:
        writer.close()
    raise AssertionError("never cut")


@needs_swtpm
def test_dribbling_clients_are_cut_at_the_deadline_while_a_node_enrolls(
    lab: Lab, strict: server_mod.EnrollServer
) -> None:
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    ctx.check_hostname = False
    port = strict.server_address[1]

    async def scenario() -> tuple[list[float], int]:
        sources = [f"127.0.0.{100 + k % SOURCES}" for k in range(DRIBBLERS)]
        tasks = [asyncio.ensure_future(dribble(port, s, ctx)) for s in sources]
        while strict.counters["conns"] < DRIBBLERS and not any(t.done() for t in tasks):
            await asyncio.sleep(0.1)
        enrolled = await asyncio.to_thread(lab.client, lab.tpm_a)
        assert enrolled.returncode == 0, enrolled.stderr
        meanwhile = sum(not t.done() for t in tasks)
        return list(await asyncio.gather(*tasks)), meanwhile

    cut, meanwhile = asyncio.run(scenario())
    print(
        f"{DRIBBLERS} dribblers (deadline 3 s, idle timeout 10 s) cut after "
        f"min {min(cut):.1f} s, median {statistics.median(cut):.1f} s, max {max(cut):.1f} s; "
        f"{meanwhile} still dribbling when the node had enrolled"
    )
    assert strict.counters["deadline"] == DRIBBLERS
    assert strict.counters["ok"] == 2  # the node's start and finish
    assert strict.counters["internal_errors"] == 0


@needs_swtpm
def test_an_address_holding_connections_leaves_room_for_a_node(
    lab: Lab, strict: server_mod.EnrollServer
) -> None:
    port = strict.server_address[1]
    held = []
    try:
        for _ in range(100):
            s = socket.socket()
            s.bind(("127.0.0.66", 0))
            s.connect(("127.0.0.1", port))
            held.append(s)
        deadline = time.monotonic() + 10
        while strict.counters["busy_source"] < 92 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert strict.counters["busy_source"] == 92  # 8 held, the rest closed at once
        r = lab.client(lab.tpm_a)
        assert r.returncode == 0, r.stderr
    finally:
        for s in held:
            s.close()
    assert strict.counters["busy"] == 0 and strict.counters["internal_errors"] == 0


def unknown_eks(n: int) -> list[bytes]:
    """n distinct public areas an unknown machine could send as its EK (software keys)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from tpm2_pytss.types import TPM2B_PUBLIC

    out = []
    for _ in range(n):
        pem = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        out.append(TPM2B_PUBLIC.from_pem(pem).marshal())
    return out


def flood(lab: Lab, eks: list[bytes], threads: int = 4) -> float:
    """Start requests for `eks` (all unknown, as node02) over kept-alive connections;
    returns the seconds it took. Every one must be refused `unregistered`."""
    import concurrent.futures
    import http.client

    from chaosnode.enroll import make_csr, new_key
    from chaosnode.enrollment import StartRequest

    csr = make_csr(new_key(), "node02", ipaddress.IPv4Address("10.99.0.12"))
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    ctx.check_hostname = False

    def send(chunk: list[bytes]) -> list[int]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", lab.server.server_address[1], context=ctx, timeout=30
        )
        statuses = []
        try:
            for ek in chunk:
                body = StartRequest("node02", (), ek, eks[0], pem).to_json()
                conn.request("POST", START_PATH, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                statuses.append(resp.status)
        finally:
            conn.close()
        return statuses

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(send, [eks[k::threads] for k in range(threads)]))
    took = time.monotonic() - start
    assert all(s == 403 for r in results for s in r)
    return took


@needs_swtpm
def test_a_flood_of_unknown_machines_is_recorded_fast_and_a_real_one_is_served(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    import concurrent.futures

    from builder.cli import main
    from builder.enroll.registry import MAX_PENDING, PendingStore

    eks = unknown_eks(2000)
    ek_b = tpm_ek_hash(lab.tpm_b)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        flooding = pool.submit(flood, lab, eks)
        # meanwhile a real new machine asks, is listed, approved and served
        r = lab.client(lab.tpm_b, "node02", "10.99.0.12", "--max-time", "1.5")
        assert r.returncode == 1 and f"TPM EK {ek_b}" in r.stderr, lab.server.counters
        assert main(["enroll", "pending", "-c", str(lab.config)]) == 0
        assert ek_b in capsys.readouterr().out
        assert main(["enroll", "approve", ek_b, "--node", "node02", "-c", str(lab.config)]) == 0
        r = lab.client(lab.tpm_b, "node02", "10.99.0.12")
        assert r.returncode == 0, r.stderr
        still_flooding = not flooding.done()
        took = flooding.result()
    store = PendingStore(lab.pki.paths.root / "pending.jsonl")
    entries = store.entries()
    with capsys.disabled():
        print(
            f"\n2000 unknown EKs recorded in {took:.1f} s ({2000 / took:.0f}/s); the real "
            f"machine was served {'during' if still_flooding else 'after'} the flood; "
            f"journal {store.path.stat().st_size // 1024} KiB, {len(entries)} listed"
        )
    assert len(entries) == MAX_PENDING and ek_b not in {p.ek_hash for p in entries}
    assert lab.server.counters["internal_errors"] == 0
