"""A PXE client's first DHCP question, for the README test: python3 dhcp_probe.py IFACE MAC.

Sends one DHCPDISCOVER as a PXE ROM does (vendor class PXEClient, client arch 0) from IFACE
and prints the first answer: `offer from SERVER vendor-class=... file=...`. Exit 1 if none
arrives within 10 s. Run inside the client's network namespace only.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time

MAGIC = bytes([99, 130, 83, 99])
PXE_CLASS = b"PXEClient:Arch:00000:UNDI:002001"


def discover(mac: bytes, xid: int) -> bytes:
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,
        1,
        6,
        0,
        xid,
        0,
        0x8000,
        bytes(4),
        bytes(4),
        bytes(4),
        bytes(4),
        mac.ljust(16, b"\0"),
        b"",
        b"",
    )
    options = (
        bytes([53, 1, 1])
        + bytes([60, len(PXE_CLASS)])
        + PXE_CLASS
        + bytes([93, 2, 0, 0])
        + bytes([94, 3, 1, 2, 1])
        + bytes([97, 17, 0])
        + bytes(16)
        + bytes([255])
    )
    return header + MAGIC + options


def options_of(packet: bytes) -> dict[int, bytes]:
    found, i = {}, 240
    while i < len(packet) and packet[i] != 255:
        if packet[i] == 0:
            i += 1
            continue
        code, size = packet[i], packet[i + 1]
        found[code] = packet[i + 2 : i + 2 + size]
        i += 2 + size
    return found


def main(iface: str, mac_text: str) -> int:
    mac = bytes.fromhex(mac_text.replace(":", ""))
    xid = int.from_bytes(os.urandom(4), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        s.bind(("0.0.0.0", 68))
        s.sendto(discover(mac, xid), ("255.255.255.255", 67))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                packet, (server, _) = s.recvfrom(4096)
            except TimeoutError:
                break
            if len(packet) < 240 or packet[4:8] != xid.to_bytes(4, "big"):
                continue
            opts = options_of(packet)
            kind = {2: "offer", 5: "ack"}.get(opts.get(53, b"\0")[0], "other")
            file = packet[108:236].rstrip(b"\0").decode(errors="replace")
            print(
                f"{kind} from {server} vendor-class={opts.get(60, b'').decode()} "
                f"file={file or '-'} pxe-options={len(opts.get(43, b''))} bytes",
                flush=True,
            )
            return 0
    print("no DHCP answer within 10 s", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
