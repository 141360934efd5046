"""Tiny traffic helpers for the smoke tests (run through the agent): python3 -m chaosnode.probe

probe listen tcp|udp PORT SECONDS   accept/receive for SECONDS, print what arrived
probe send tcp|udp ADDR PORT TEXT [SECONDS]
                                    send TEXT once (a TCP connect waits SECONDS, 10 by default)
probe sink PORT SECONDS             accept one TCP stream, print its rate
probe blast ADDR PORT MEGABYTES     send MEGABYTES over TCP, print the rate
probe connect ADDR PORT             a TCP connect: prints `open`, or `closed: why`
"""

from __future__ import annotations

import socket
import sys
import time


def listen(proto: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        if proto == "tcp":
            s.listen(8)
        print(f"listening on {proto} {port}", flush=True)  # the sender waits for this line
        while time.monotonic() < deadline:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                if proto == "tcp":
                    conn, peer = s.accept()
                    with conn:
                        conn.settimeout(5)
                        data = conn.recv(4096)
                else:
                    data, peer = s.recvfrom(4096)
            except OSError:
                continue
            print(f"from {peer[0]}: {data.decode(errors='replace')}", flush=True)


def send(proto: str, addr: str, port: int, text: str, wait: float = 10.0) -> None:
    if proto == "tcp":
        with socket.create_connection((addr, port), timeout=wait) as s:
            s.sendall(text.encode())
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(text.encode(), (addr, port))
    print("sent", flush=True)


def sink(port: int, seconds: float) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(1)
        s.settimeout(seconds)
        conn, peer = s.accept()
        with conn:
            start, total = time.monotonic(), 0
            while chunk := conn.recv(1 << 16):
                total += len(chunk)
            took = time.monotonic() - start
    print(
        f"received {total} bytes from {peer[0]} in {took:.2f} s: {total / took / 1e6:.1f} MB/s",
        flush=True,
    )


def blast(addr: str, port: int, megabytes: int) -> None:
    block = b"\0" * (1 << 16)
    with socket.create_connection((addr, port), timeout=30) as s:
        start = time.monotonic()
        for _ in range(megabytes * 16):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
        took = time.monotonic() - start
    print(
        f"sent {megabytes} MB in {took:.2f} s: {megabytes * 1.048576 / took:.1f} MB/s", flush=True
    )


def connect(addr: str, port: int, timeout: float = 5.0) -> str:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return "open"
    except OSError as exc:
        return f"closed: {exc.strerror or type(exc).__name__}"


def main(argv: list[str]) -> int:
    match argv:
        case ["sink", port, seconds]:
            sink(int(port), float(seconds))
        case ["blast", addr, port, megabytes]:
            blast(addr, int(port), int(megabytes))
        case ["listen", ("tcp" | "udp") as proto, port, seconds]:
            listen(proto, int(port), float(seconds))
        case ["send", ("tcp" | "udp") as proto, addr, port, text]:
            send(proto, addr, int(port), text)
        case ["send", ("tcp" | "udp") as proto, addr, port, text, seconds]:
            send(proto, addr, int(port), text, float(seconds))
        case ["connect", addr, port]:
            print(f"{addr}:{port} {connect(addr, int(port))}", flush=True)
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
