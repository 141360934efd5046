"""Wake-on-LAN for the lab: `chaos-build wake [NODE...]` and serve at the start of the night.

A magic packet is 6 bytes 0xff then the target MAC 16 times (102 bytes), sent as a UDP
broadcast (port 9, discard) bound to the lab interface (SO_BINDTODEVICE), so it leaves on that
segment and nowhere else. Only the MACs of chaos.yaml's nodes are ever woken, one after the
other with schedule.wake_stagger_ms between two packets: hundreds of PCs must not switch their
power supplies on in the same second.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence

from ..errors import ChaosError
from ..model import Cluster, Node

WOL_PORT = 9
BROADCAST = "255.255.255.255"


def magic_packet(mac: str) -> bytes:
    """Pure: the Wake-on-LAN payload for one MAC (aa:bb:cc:dd:ee:ff)."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    return b"\xff" * 6 + raw * 16


def targets(cluster: Cluster, names: Sequence[str]) -> tuple[Node, ...]:
    """The nodes to wake: all of them, or the named ones (unknown names are an error)."""
    if not names:
        return cluster.nodes
    known = {n.name: n for n in cluster.nodes}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ChaosError(
            f"no node named {', '.join(unknown)}; known nodes: "
            f"{', '.join(known)} (only chaos.yaml's nodes are ever woken)"
        )
    return tuple(known[n] for n in names)


def open_socket(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    except OSError as exc:
        sock.close()
        raise ChaosError(
            f"cannot send on interface {interface!r}: {exc} (binding to an "
            "interface needs root; check serve.interface)"
        ) from None
    return sock


def wake(
    nodes: Sequence[Node],
    interface: str,
    stagger_ms: int,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> int:
    """Send one magic packet per node on `interface`, stagger_ms apart; returns the count."""
    with open_socket(interface) as sock:
        for i, node in enumerate(nodes):
            if i and stagger_ms:
                sleep(stagger_ms / 1000)
            try:
                sock.sendto(magic_packet(node.mac), (BROADCAST, WOL_PORT))
            except OSError as exc:
                raise ChaosError(f"waking {node.name} on {interface}: {exc}") from None
            say(f"woke {node.name} ({node.mac}) on {interface}")
    return len(nodes)
