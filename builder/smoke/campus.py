"""The campus of the day-and-night lab: a network namespace of its own outside the lab
segment, joined to the lab's namespace by a veth pair; the lab's namespace routes between
them (its br0 address is the nodes' gateway). The user's laptop has an address inside
login_from, an outsider's machine one outside it, both on the campus /24. Users reach the
always-on head from here with ssh and scp, keys made by the lab."""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.run import run
from builder.smoke.lab import ip

# known_hosts names the head, not its address: the host key must survive the power cycle
HOST_ALIAS = "chaos-head"
SSH_TIMEOUT = 90.0


def keygen(path: Path) -> Path:
    """A fresh ed25519 key pair for a lab user (path and path.pub); the private half stays in
    the results folder of this run and is never served or built into anything."""
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", path], quiet=True)
    return path


@dataclass
class Campus:
    ns: str
    lab_ns: str
    campus: str  # the user's address
    outsider: str  # an address outside login_from
    known_hosts: Path

    @property
    def router(self) -> str:
        net = ipaddress.ip_network(f"{self.campus}/24", strict=False)
        return str(next(net.hosts()))

    def up(self) -> None:
        ip("netns", "add", self.ns)
        ip("-n", self.ns, "link", "set", "lo", "up")
        ip("-n", self.lab_ns, "link", "add", "campus0", "type", "veth", "peer", "name", "lab0")
        ip("-n", self.lab_ns, "link", "set", "lab0", "netns", self.ns)
        ip("-n", self.lab_ns, "addr", "add", f"{self.router}/24", "dev", "campus0")
        ip("-n", self.lab_ns, "link", "set", "campus0", "up")
        for address in (self.campus, self.outsider):
            ip("-n", self.ns, "addr", "add", f"{address}/24", "dev", "lab0")
        ip("-n", self.ns, "link", "set", "lab0", "up")
        ip("-n", self.ns, "route", "add", "default", "via", self.router)
        run(
            ["ip", "netns", "exec", self.lab_ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
            quiet=True,
        )

    def down(self) -> None:
        ip("netns", "del", self.ns, check=False)

    def _ssh_options(self, key: Path, source: str, strict: str) -> list[str]:
        return [
            "-F",
            "none",
            "-i",
            str(key),
            "-o",
            f"BindAddress={source}",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            f"HostKeyAlias={HOST_ALIAS}",
            "-o",
            f"StrictHostKeyChecking={strict}",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
        ]

    def ssh(
        self,
        key: Path,
        user: str,
        host: str,
        command: str,
        source: str = "",
        strict: str = "yes",
        stdin: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """ssh from the campus (from the user's address unless source names another)."""
        return run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "ssh",
                *self._ssh_options(key, source or self.campus, strict),
                f"{user}@{host}",
                command,
            ],
            input=stdin,
            check=False,
            timeout=SSH_TIMEOUT,
            quiet=True,
        )

    def scp(self, key: Path, user: str, host: str, remote: str, local: Path) -> str:
        """Copy one file off the head to local; "" when it worked, else scp's complaint."""
        r = run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "scp",
                "-q",
                *self._ssh_options(key, self.campus, "yes"),
                f"{user}@{host}:{remote}",
                str(local),
            ],
            check=False,
            timeout=SSH_TIMEOUT,
            quiet=True,
        )
        return "" if r.returncode == 0 else r.stderr.decode(errors="replace").strip()[-300:]

    def connect(self, host: str, port: int, source: str) -> bool:
        """Whether a TCP connect from source to host:port completes within 5 s."""
        r = run(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "python3",
                "-c",
                "import socket,sys\n"
                "s=socket.socket(); s.settimeout(5); s.bind((sys.argv[1], 0))\n"
                "s.connect((sys.argv[2], int(sys.argv[3])))",
                source,
                host,
                str(port),
            ],
            check=False,
            timeout=30,
            quiet=True,
        )
        return r.returncode == 0
