"""The smoke lab: a private L2 segment (a bridge inside a network namespace of its own, one
tap per VM) and QEMU guests on it. Nothing here touches a real network."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from builder.errors import ChaosError
from builder.image.qemu import QEMU, RESULT
from builder.model import Cluster
from builder.run import run, spawn, stop_processes
from builder.smoke import tpms
from builder.smoke.firmware import Firmware, nic_options, qemu_args

AGENT_PORT = "org.chaos.agent"
# the head's state disk shows up as /dev/disk/by-id/virtio-chaos-state
STATE_SERIAL = "chaos-state"


def ip(*args: str, check: bool = True) -> None:
    run(["ip", *args], check=check, timeout=60, quiet=True)


@dataclass
class Namespace:
    """A network namespace the lab made, and the processes it started inside it."""

    ns: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list, init=False)

    def spawn(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        proc = spawn(["ip", "netns", "exec", self.ns, *argv], log_file=log)
        self.procs.append(proc)
        return proc

    def down(self) -> None:
        stop_processes(self.procs)
        self.procs.clear()
        ip("netns", "del", self.ns, check=False)


@dataclass
class Segment(Namespace):
    """netns + bridge br0 with the server address; taps are added per VM."""

    server: str  # address/prefix of br0 (the serve host)
    taps: list[str] = field(default_factory=list)

    def up(self) -> None:
        ip("netns", "add", self.ns)
        ip("-n", self.ns, "link", "set", "lo", "up")
        ip("-n", self.ns, "link", "add", "br0", "type", "bridge")
        ip("-n", self.ns, "addr", "add", self.server, "dev", "br0")
        ip("-n", self.ns, "link", "set", "br0", "up")

    def add_tap(self) -> str:
        tap = f"tap{len(self.taps)}"
        ip("-n", self.ns, "tuntap", "add", "dev", tap, "mode", "tap")
        ip("-n", self.ns, "link", "set", tap, "master", "br0", "up")
        self.taps.append(tap)
        return tap


def free_address(
    cluster: Cluster, taken: Iterable[IPv4Address] = (), highest: bool = True
) -> IPv4Address:
    """An address of the lab's subnet that no node, the gateway, serve or `taken` has: the
    highest such (the rogue's) or the lowest (the rogue DHCP laptop's)."""
    used = {n.address for n in cluster.nodes} | {cluster.network.gateway, cluster.serve.address}
    used |= set(taken)
    hosts = list(cluster.network.subnet.hosts())
    return next(a for a in (reversed(hosts) if highest else hosts) if a not in used)


@dataclass
class Guest:
    """One QEMU guest on the segment: serial console to a file, agent on a unix socket."""

    name: str
    mac: str
    workdir: Path
    disk: Path
    proc: subprocess.Popen[bytes] | None = None
    tpm_proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    reboot: bool = False  # a reboot restarts the VM (the night scenario), else QEMU exits
    firmware: Firmware = Firmware.BIOS
    # the always-on head's second disk (serial chaos-state): its queue and homes
    state_disk: Path | None = None
    # called on every turn of a wait: raises when something the lab needs (serve) has died
    watch: Callable[[], None] = lambda: None
    _sock: socket.socket | None = None
    _buf: bytes = b""
    _id: int = 0

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    @property
    def agent_path(self) -> Path:
        return self.workdir / "agent.sock"

    @property
    def tpm_state(self) -> Path:
        return self.workdir / "tpm"

    @property
    def tpm_socket(self) -> Path:
        return self.workdir / "swtpm.sock"

    def argv(self, accel: list[str], tap: str, boot: str, media: dict[str, Path]) -> list[str]:
        argv = [
            QEMU,
            *accel,
            *qemu_args(self.firmware, self.workdir),
            "-m",
            "1024",
            "-display",
            "none",
            "-nodefaults",
            *([] if self.reboot else ["-no-reboot"]),
            "-monitor",
            "none",
            "-serial",
            f"file:{self.console}",
            "-netdev",
            f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device",
            f"virtio-net-pci,netdev=n0,mac={self.mac}"
            + nic_options(self.firmware)
            + (",bootindex=0" if boot == "pxe" else ""),
            "-device",
            "virtio-serial-pci",
            "-chardev",
            f"socket,id=agent,path={self.agent_path},server=on,wait=off",
            "-device",
            f"virtserialport,chardev=agent,name={AGENT_PORT}",
            "-drive",
            f"file={self.disk},format=raw,if=none,id=d0",
            "-device",
            "virtio-blk-pci,drive=d0",
            *tpms.qemu_args(self.tpm_socket),
        ]
        if self.state_disk is not None:
            argv += [
                "-drive",
                f"file={self.state_disk},format=raw,if=none,id=d1",
                "-device",
                f"virtio-blk-pci,drive=d1,serial={STATE_SERIAL}",
            ]
        if boot == "iso":
            argv += [
                "-drive",
                f"file={media['iso']},media=cdrom,readonly=on,if=none,id=cd0",
                "-device",
                "ide-cd,drive=cd0,bootindex=0",
            ]
        elif boot == "kernel":
            argv += [
                "-kernel",
                str(media["kernel"]),
                "-initrd",
                str(media["initrd"]),
                "-append",
                str(media["append"]),
            ]
        return argv

    def result(self) -> str | None:
        """The self-check line once printed, None before; raises if QEMU ended without it."""
        self.watch()
        text = self.console.read_text(errors="replace") if self.console.exists() else ""
        if match := RESULT.search(text):
            return match.group(0).strip()
        if self.proc is not None and self.proc.poll() is not None:
            raise ChaosError(
                f"{self.name}: QEMU exited ({self.proc.returncode}) "
                f"before the self-check; see {self.console}"
            )
        return None

    def wait_result(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (line := self.result()) is None:
            if time.monotonic() >= deadline:
                raise ChaosError(
                    f"{self.name}: no CHAOS-READY/FAILED line within "
                    f"{timeout:.0f}s; see {self.console}"
                )
            time.sleep(1)
        return line

    def wait_console(self, pattern: re.Pattern[str], timeout: float) -> str:
        """The first console match of pattern (or the self-check line) within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            if match := pattern.search(text):
                return match.group(0).strip()
            if (line := self.result()) is not None:
                return line
            if time.monotonic() >= deadline:
                raise ChaosError(
                    f"{self.name}: {pattern.pattern!r} not on the console within "
                    f"{timeout:.0f}s; see {self.console}"
                )
            time.sleep(1)

    def wait_text(self, marker: str, timeout: float) -> str:
        """The whole console once marker is on it; raises after timeout or if QEMU ends."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            if marker in text:
                return text
            self.watch()
            if self.proc is not None and self.proc.poll() is not None:
                raise ChaosError(
                    f"{self.name}: QEMU exited ({self.proc.returncode}) before "
                    f"{marker!r}; see {self.console}"
                )
            if time.monotonic() >= deadline:
                raise ChaosError(
                    f"{self.name}: {marker!r} not on the console within "
                    f"{timeout:.0f}s; see {self.console}"
                )
            time.sleep(1)

    # -- agent ------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(self.agent_path))
            self._sock = sock
        return self._sock

    def exec(self, argv: list[str], timeout: float = 30) -> tuple[int, str]:
        """Run argv in the guest through chaos-agent; (exit code, stdout + stderr)."""
        self._id += 1
        sock = self._connect()
        sock.settimeout(timeout + 15)  # a guest whose agent reads nothing must not hang us
        try:
            sock.sendall(
                json.dumps({"id": self._id, "argv": argv, "timeout": timeout}).encode() + b"\n"
            )
            return self._reply(sock)
        except TimeoutError:
            self.disconnect()  # a late reply must not be taken for the next request's
            raise ChaosError(
                f"{self.name}: the agent did not answer `{' '.join(argv)[:80]}` "
                f"within {timeout + 15:.0f}s"
            ) from None

    def _reply(self, sock: socket.socket) -> tuple[int, str]:
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                reply = json.loads(line)
                if reply.get("id") == self._id:
                    return int(reply["rc"]), reply["out"] + reply["err"]
            chunk = sock.recv(65536)
            if not chunk:
                self._sock = None
                raise ChaosError(f"{self.name}: agent connection closed")
            self._buf += chunk

    def disconnect(self) -> None:
        """Free the agent port (it takes one client at a time) for someone else."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf = b""

    def stop(self) -> None:
        self.disconnect()
        stop_processes([p for p in (self.proc, self.tpm_proc) if p is not None])


def make_disk(path: Path, size_mb: int = 16, boot_sector: bytes = b"") -> str:
    """A virtual disk with recognisable content (and a boot sector: the day OS); returns its
    sha256."""
    block = hashlib.sha256(path.name.encode()).digest() * (1024 * 1024 // 32)
    with path.open("wb") as f:
        for _ in range(size_mb):
            f.write(block)
        f.seek(0)
        f.write(boot_sector)
    return sha256(path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def need_root() -> None:
    if os.geteuid() != 0:
        raise ChaosError("smoke needs root: it creates a network namespace, a bridge and taps")
