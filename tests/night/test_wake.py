"""Wake-on-LAN: the magic packet's bytes, the node selection, and (root, a namespace this test
creates) `chaos-build wake` on the real network stack, captured by tcpdump: one well-formed
packet per node on the lab interface, none for a MAC outside chaos.yaml, none elsewhere."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaostest import ROOT

from builder.errors import ChaosError
from builder.night.wake import magic_packet, targets


def test_magic_packet_is_six_ff_then_the_mac_sixteen_times():
    packet = magic_packet("52:54:00:99:00:11")
    assert len(packet) == 102
    assert packet[:6] == b"\xff" * 6
    assert packet[6:] == bytes.fromhex("525400990011") * 16
    with pytest.raises(ValueError):
        magic_packet("52:54:00:99:00")


def test_only_chaos_yaml_nodes_are_woken(default_cluster):
    assert targets(default_cluster, []) == default_cluster.nodes
    assert [n.name for n in targets(default_cluster, ["node03"])] == ["node03"]
    with pytest.raises(ChaosError, match="no node named pc42"):
        targets(default_cluster, ["node01", "pc42"])


def read_pcap(path: Path) -> list[bytes]:
    """Frames of a classic little-endian pcap file (what tcpdump -w writes)."""
    data = path.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4, "a microsecond pcap"
    frames, off = [], 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<IIII", data, off)[2]
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


def wol_payloads(frames: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(destination MAC, UDP payload) of every IPv4 UDP frame to port 9."""
    out = []
    for f in frames:
        if f[12:14] != b"\x08\x00" or f[23] != 17:
            continue
        ihl = (f[14] & 0x0F) * 4
        udp = 14 + ihl
        if struct.unpack_from("!H", f, udp + 2)[0] == 9:
            out.append((f[:6], f[udp + 8 :]))
    return out


def wait_operstate_up(ns: str, dev: str) -> None:
    """A fresh veth drops what is sent before the kernel's link watch marks it up and gives
    it its queueing discipline (noop until then)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run(
            ["ip", "-n", ns, "-o", "link", "show", dev], capture_output=True, text=True
        )
        if "state UP" in r.stdout and "qdisc noop" not in r.stdout:
            return
        time.sleep(0.05)
    pytest.fail(f"{dev} did not come up: {r.stdout}")


class Capture:
    def __init__(self, ns: str, interface: str, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "tcpdump",
                "-i",
                interface,
                "-p",
                "-n",
                "-U",
                "--immediate-mode",
                "-w",
                str(path),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "listening on ...": capturing from here on
        assert "listening on" in line, line

    def frames(self) -> list[bytes]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=15)
        return read_pcap(self.path)


@pytest.mark.integration
def test_wake_sends_one_packet_per_node_on_the_lab_interface_only(tmp_path, default_cluster):
    if os.geteuid() != 0 or shutil.which("tcpdump") is None:
        pytest.skip("needs root (a network namespace) and tcpdump")
    ns = f"chaos-wake-{os.getpid()}"
    ip = ["ip", "-n", ns]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for here, there, addr in (
            ("lab0", "cli0", "10.99.0.1/24"),
            ("other0", "oth1", "10.98.0.1/24"),
        ):
            subprocess.run(
                [*ip, "link", "add", here, "type", "veth", "peer", "name", there], check=True
            )
            subprocess.run([*ip, "addr", "add", addr, "dev", here], check=True)
            subprocess.run([*ip, "link", "set", here, "up"], check=True)
            subprocess.run([*ip, "link", "set", there, "up"], check=True)
        for dev in ("lab0", "cli0", "other0", "oth1"):
            wait_operstate_up(ns, dev)
        lab, other = (
            Capture(ns, "cli0", tmp_path / "lab.pcap"),
            Capture(ns, "oth1", tmp_path / "other.pcap"),
        )
        wake = [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "builder.cli",
            "wake",
            "-c",
            str(ROOT / "chaos.yaml"),
            "--interface",
            "lab0",
            "--stagger-ms",
            "1",
        ]
        every = subprocess.run(wake, cwd=ROOT, capture_output=True, text=True)
        stranger = subprocess.run([*wake, "pc42"], cwd=ROOT, capture_output=True, text=True)
        one = subprocess.run([*wake, "node02"], cwd=ROOT, capture_output=True, text=True)
        lab_frames, other_frames = lab.frames(), other.frames()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert every.returncode == 0, every.stderr
    assert "sent 3 Wake-on-LAN packet(s) on lab0" in every.stderr
    assert stranger.returncode == 1 and "no node named pc42" in stranger.stderr
    assert one.returncode == 0, one.stderr
    got = wol_payloads(lab_frames)
    expected = [magic_packet(n.mac) for n in default_cluster.nodes]
    expected.append(magic_packet(default_cluster.node("node02").mac))
    assert [payload for _, payload in got] == expected, "one per node, in order, nothing else"
    assert all(dst == b"\xff" * 6 for dst, _ in got), "Ethernet broadcast"
    assert wol_payloads(other_frames) == [], "nothing leaves on another interface"


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))


def test_packets_are_staggered(default_cluster, monkeypatch):
    from builder.night import wake as wake_module  # noqa: PLC0415

    sock = FakeSocket()
    monkeypatch.setattr(wake_module, "open_socket", lambda interface: sock)
    pauses: list[float] = []
    count = wake_module.wake(
        default_cluster.nodes, "lab0", 250, sleep=pauses.append, say=lambda _: None
    )
    assert count == 3 and pauses == [0.25, 0.25], "a pause between two packets, none before"
    assert [a for _, a in sock.sent] == [("255.255.255.255", 9)] * 3
