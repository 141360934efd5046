"""N simulated PXE clients at once: what a lab PC fetches after DHCP, each on its own thread.

    python3 bench/pxe_clients.py --server 10.99.0.1 --port 8080 --manifest M.json --clients 200

The manifest (JSON) lists what each client fetches and what it must get:
  {"tftp": ["undionly.kpxe"],   # fetched first, over TFTP (or [name, blksize] entries)
   "http": [["boot.ipxe", "mac-52-54-00-99-00-11.ipxe", "vmlinuz", ...], ...],  # per client
   "files": {"vmlinuz": {"size": N, "sha256": "..."}, ...}}
Client i uses http[i % len(http)], one kept-alive connection for its whole sequence, as iPXE
does. All clients start together (a barrier). Bodies are checked by size and, with --verify,
by SHA-256. Prints one JSON object: clients, failures (with reasons), bytes, seconds (from the
start until the last client is done), tftp_seconds, http_seconds.

Standard library only, so it runs as is inside a network namespace (`ip netns exec`). Used by
bench/storm.py and tests/test_serve.py.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import random
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

CHUNK = 1 << 20
TFTP_PORT = 69
TFTP_TIMEOUT = 2.0
TFTP_RETRIES = 5
TFTP_BOUND = 120.0  # seconds for one whole TFTP read, whatever goes wrong


@dataclass
class Result:
    bytes: int = 0
    failures: list[str] = field(default_factory=list)
    tftp_done: float = 0.0
    done: float = 0.0


class _TftpRead(asyncio.DatagramProtocol):
    """One TFTP read (RFC 1350), 512-byte blocks as a PXE ROM asks, or the block size a
    loader negotiates (RFC 2348 blksize: signed GRUB asks 1024, OVMF 1468)."""

    def __init__(
        self, server: str, name: str, done: asyncio.Future[bytes], blksize: int = 512
    ) -> None:
        self.server, self.name, self.done = server, name, done
        self.data = bytearray()
        self.expected, self.retries = 1, 0
        self.block = 512  # until the server's OACK agrees to another size
        options = b"" if blksize == 512 else b"blksize\0" + str(blksize).encode() + b"\0"
        self.pending: tuple[bytes, tuple[str, int]] = (
            struct.pack("!H", 1) + name.encode() + b"\0octet\0" + options,
            (server, TFTP_PORT),
        )
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.transport.sendto(*self.pending)
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(TFTP_TIMEOUT, self.timed_out)

    def timed_out(self) -> None:
        self.retries += 1
        if self.retries > TFTP_RETRIES:
            self.finish(
                TimeoutError(
                    f"tftp {self.name}: no block {self.expected} after {TFTP_RETRIES} retries"
                )
            )
        else:
            self.send()  # our last packet was lost, or its answer

    def datagram_received(self, packet: bytes, addr: tuple[str, int]) -> None:
        if len(packet) < 4 or self.done.done():
            return
        opcode, block = struct.unpack("!HH", packet[:4])
        if opcode == 5:
            self.finish(
                OSError(f"tftp {self.name}: error {block}: {packet[4:-1].decode(errors='replace')}")
            )
        elif opcode == 6 and self.expected == 1:  # OACK: the options the server took
            fields = packet[2:].split(b"\0")
            agreed = dict(zip(fields[0::2], fields[1::2], strict=False))
            self.block = int(agreed.get(b"blksize", b"512"))
            self.pending = (struct.pack("!HH", 4, 0), addr)
            self.send()
        elif opcode == 3 and block == self.expected & 0xFFFF:
            self.data += packet[4:]
            self.expected += 1
            self.retries = 0
            self.pending = (struct.pack("!HH", 4, block), addr)
            self.send()
            if len(packet) - 4 < self.block:
                self.finish(None)
        elif opcode == 3 and block == (self.expected - 1) & 0xFFFF:
            self.send()  # our ACK was lost: the server sent the block again

    def error_received(self, exc: Exception) -> None:
        self.finish(exc)

    def finish(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.done.done():
            if exc is None:
                self.done.set_result(bytes(self.data))
            else:
                self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


async def tftp_get(server: str, name: str, blksize: int = 512) -> bytes:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    await loop.create_datagram_endpoint(
        lambda: _TftpRead(server, name, done, blksize), family=socket.AF_INET
    )
    return await done


def fetch(
    conn: http.client.HTTPConnection, path: str, want: dict[str, Any], verify: bool, buf: bytearray
) -> int:
    conn.request("GET", f"/{path}")
    resp = conn.getresponse()
    if resp.status != 200:
        resp.read()
        raise OSError(f"{path}: HTTP {resp.status}")
    digest = hashlib.sha256() if verify else None
    view = memoryview(buf)
    got = 0
    while True:
        n = resp.readinto(buf)
        if not n:
            break
        got += n
        if digest is not None:
            digest.update(view[:n])
    if got != want["size"]:
        raise OSError(f"{path}: {got} bytes, expected {want['size']} (short body)")
    if digest is not None and digest.hexdigest() != want["sha256"]:
        raise OSError(f"{path}: checksum mismatch")
    return got


def client(
    server: str,
    port: int,
    manifest: dict[str, Any],
    paths: list[str],
    verify: bool,
    start: threading.Barrier,
    result: Result,
    t0: list[float],
    udp: asyncio.AbstractEventLoop,
) -> None:
    start.wait()
    buf = bytearray(CHUNK)
    try:
        for entry in manifest.get("tftp", []):
            # a name (512-byte blocks) or [name, blksize] (what the loader negotiates)
            name, blksize = (entry, 512) if isinstance(entry, str) else entry
            # TFTP is lockstep UDP: one event loop serves every client's transfer (500 threads
            # each waking per 512-byte block made the client, not dnsmasq, the bottleneck)
            data = asyncio.run_coroutine_threadsafe(tftp_get(server, name, blksize), udp).result(
                timeout=TFTP_BOUND
            )
            want = manifest["files"][name]
            if len(data) != want["size"] or hashlib.sha256(data).hexdigest() != want["sha256"]:
                raise OSError(f"tftp {name}: {len(data)} bytes, not the file served")
            result.bytes += len(data)
        result.tftp_done = time.monotonic() - t0[0]
        conn = http.client.HTTPConnection(server, port, timeout=120)
        try:
            for path in paths:
                result.bytes += fetch(conn, path, manifest["files"][path], verify, buf)
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
        result.failures.append(f"{type(exc).__name__}: {exc}")
    result.done = time.monotonic() - t0[0]


def run_clients(
    server: str, port: int, manifest: dict[str, Any], clients: int, verify: bool
) -> dict[str, Any]:
    results = [Result() for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    t0 = [0.0]
    udp = asyncio.new_event_loop()
    threading.Thread(target=udp.run_forever, daemon=True, name="tftp").start()
    threads = [
        threading.Thread(
            target=client,
            daemon=True,
            args=(
                server,
                port,
                manifest,
                manifest["http"][i % len(manifest["http"])],
                verify,
                start,
                results[i],
                t0,
                udp,
            ),
            name=f"client{i}",
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    t0[0] = time.monotonic()
    start.wait()
    for t in threads:
        t.join()
    udp.call_soon_threadsafe(udp.stop)
    failures = [f"client {i}: {f}" for i, r in enumerate(results) for f in r.failures]
    return {
        "clients": clients,
        "failures": failures,
        "failed_clients": sum(1 for r in results if r.failures),
        "bytes": sum(r.bytes for r in results),
        "seconds": max(r.done for r in results),
        "tftp_seconds": max(r.tftp_done for r in results),
    }


def write_tree(
    pxe: Path,
    nodes: list[tuple[str, str]],
    kernel: int,
    initrd: int,
    cpio: int,
    loader: int = 70 * 1024,
) -> dict[str, Any]:
    """A synthetic PXE tree (random bytes of the given sizes, named as `chaos-build build`
    names them) for nodes [(name, mac with hyphens)]; returns its manifest."""
    rng = random.Random(0)
    files: dict[str, bytes] = {
        "boot.ipxe": b"#!ipxe\nchain mac-${netX/mac:hexhyp}.ipxe\n",
        "vmlinuz": rng.randbytes(kernel),
        "initrd.img": rng.randbytes(initrd),
        "undionly.kpxe": rng.randbytes(loader),
        "shimx64.efi": rng.randbytes(loader),
        "grubx64.efi": rng.randbytes(loader),
        "grub/grub.cfg": b"configfile (tftp)/grub/mac-${net_default_mac}.cfg\n",
    }
    http: list[list[str]] = []
    for name, mac in nodes:
        script = f"mac-{mac}.ipxe"
        files[script] = (
            f"#!ipxe\nkernel vmlinuz\ninitrd initrd.img\ninitrd nodes/{name}.cpio\nboot\n"
        ).encode()
        files[f"nodes/{name}.cpio"] = rng.randbytes(cpio)
        files[f"grub/mac-{mac.replace('-', ':')}.cfg"] = (
            f"linux (tftp)/vmlinuz\ninitrd (tftp)/initrd.img (tftp)/nodes/{name}.cpio\nboot\n"
        ).encode()
        http.append(["boot.ipxe", script, "vmlinuz", "initrd.img", f"nodes/{name}.cpio"])
    (pxe / "nodes").mkdir(parents=True, exist_ok=True)
    (pxe / "grub").mkdir(exist_ok=True)
    for rel, data in files.items():
        (pxe / rel).write_bytes(data)
    return {
        "tftp": ["undionly.kpxe"],
        "http": http,
        "files": {
            rel: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for rel, data in files.items()
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--no-tftp", action="store_true", help="HTTP only (the nginx ceiling)")
    ap.add_argument("--verify", action="store_true", help="check SHA-256 of every body")
    args = ap.parse_args()
    if not 1 <= args.clients <= 2000:
        ap.error("--clients must be 1..2000")
    manifest = json.loads(args.manifest.read_text())
    if args.no_tftp:
        manifest["tftp"] = []
    threading.stack_size(256 * 1024)
    out = run_clients(args.server, args.port, manifest, args.clients, args.verify)
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
