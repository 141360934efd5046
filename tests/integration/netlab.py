"""A private L2 segment of network namespaces (a bridge inside its own namespace), made and
torn down by the tests. Nothing here touches a real network."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from builder.run import spawn, stop_processes

CHARON = Path("/usr/sbin/charon-systemd")


def need_root_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (CI runs as root)")
    for tool in ("ip", *tools):
        if shutil.which(tool) is None and not Path(tool).exists():
            pytest.skip(f"{tool} is not installed (make setup installs it)")


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r


@dataclass
class Host:
    ns: str
    address: str

    def sh(
        self, *argv: str, check: bool = True, timeout: float = 30, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        prefix = ["ip", "netns", "exec", self.ns]
        if env:
            prefix += ["env", *(f"{k}={v}" for k, v in env.items())]
        return run(*prefix, *argv, check=check, timeout=timeout)

    def nft_counter(self, name: str) -> int:
        out = self.sh("nft", "-j", "list", "counter", "inet", "chaos", name).stdout
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                return int(item["counter"]["packets"])
        raise AssertionError(f"no counter {name}")

    def tcp_connect(self, address: str, port: int, timeout: float = 1.0) -> bool:
        code = (
            "import socket,sys\n"
            f"s=socket.socket(); s.settimeout({timeout})\n"
            f"sys.exit(0 if s.connect_ex(({address!r},{port}))==0 else 1)"
        )
        return self.sh("python3", "-c", code, check=False).returncode == 0

    def ping(self, address: str) -> bool:
        return self.sh("ping", "-c", "1", "-W", "1", address, check=False).returncode == 0


@dataclass
class Lab:
    tag: str
    prefixlen: int = 24
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def bridge_ns(self) -> str:
        return f"chaosbr-{self.tag}"

    def start(self) -> None:
        run("ip", "netns", "add", self.bridge_ns)
        run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")

    def add(self, name: str, address: str) -> Host:
        ns = f"chaos-{self.tag}-{name}"
        port = f"p{len(self.hosts)}"
        run("ip", "netns", "add", ns)
        run(
            "ip",
            "-n",
            self.bridge_ns,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        )
        run("ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", ns, "addr", "add", f"{address}/{self.prefixlen}", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        host = Host(ns, address)
        self.hosts[name] = host
        return host

    def spawn(
        self, host: Host, argv: list[str], env: dict[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        log.unlink(missing_ok=True)
        proc = spawn(
            ["ip", "netns", "exec", host.ns, "env", *(f"{k}={v}" for k, v in env.items()), *argv],
            log_file=log,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        stop_processes(self.procs)
        for host in self.hosts.values():
            run("ip", "netns", "del", host.ns, check=False)
        run("ip", "netns", "del", self.bridge_ns, check=False)


@contextlib.contextmanager
def lab(tag: str) -> Iterator[Lab]:
    the_lab = Lab(f"{tag}{os.getpid() % 10000}")
    the_lab.start()
    try:
        yield the_lab
    finally:
        the_lab.stop()


def wait_for(predicate, timeout: float, what: str, step: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
