#!/usr/bin/env python3
"""charon with hundreds of run-time peers: load N peer connections through VICI, as tyd's
VICI hook does for members it learns at run time (one load-conn per peer, the shared
definition chaosnode.ipsec.connection), into a real charon-systemd in a network namespace of
its own. Root; nothing leaves the namespace (a veth pair inside it; the peers do not exist).

Prints, per N and IPsec scope: seconds to load, charon's RSS before and after, the XFRM
policies installed (trap policies: every child starts on demand) and the IKE_SAs held; then
a TCP SYN to 3 peers, and how many IKE_SAs that starts (3: on demand, never eager); then the
seconds to unload them all.

    sudo python3 bench/charon_peers.py [--sizes 500,2000] [--scopes all,migration]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.model import KeyType  # noqa: E402
from builder.pki import Identity, Pki  # noqa: E402
from builder.run import spawn, stop_processes  # noqa: E402
from chaosnode.ipsec import DPD_SECONDS, Policy  # noqa: E402
from tyd.hooks import MAX_BATCH  # noqa: E402
from tyd.ipsec import ViciHook  # noqa: E402
from tyd.member import Member, State  # noqa: E402
from tyd.membership import Change, ChangeKind  # noqa: E402
from tyd.nft import NftSetHook  # noqa: E402

CHARON = "/usr/sbin/charon-systemd"
PLUGINS = (
    "random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pem openssl kdf "
    "kernel-netlink socket-default vici updown"
)
NET = ipaddress.IPv4Network("10.100.0.0/16")
ME = NET.network_address + 10


def sh(ns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True, timeout=120
    ).stdout


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def charon_pid(ns: str) -> int:
    """The charon running inside this namespace (the child of `ip netns exec`)."""
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.readlink(f"/proc/{pid}/exe") == CHARON and _in_ns(pid, ns):
                return pid
        except OSError:
            continue
    raise RuntimeError("charon is not running")


def _in_ns(pid: int, ns: str) -> bool:
    return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns}").st_ino


def count_ike_sas(ns: str, env: dict[str, str], socket: Path) -> int:
    out = sh(
        ns,
        "env",
        *(f"{k}={v}" for k, v in env.items()),
        "swanctl",
        "--list-sas",
        "--uri",
        f"unix://{socket}",
    )
    return sum(1 for line in out.splitlines() if line.startswith("peer-"))


def one_run(n: int, scope: str, tmp: Path, pki: Pki) -> None:
    ns = f"chaos-bench-{os.getpid()}"
    socket = tmp / f"{ns}.vici"
    swanctl = tmp / "swanctl"
    conf = tmp / "strongswan.conf"
    conf.write_text(
        f"charon-systemd {{\n load = {PLUGINS}\n install_routes = no\n"
        f" plugins {{ vici {{ socket = unix://{socket} }} }}\n"
        f" filelog {{ bench {{ path = {tmp}/charon.log\n default = 0 }} }}\n}}\n"
        f"swanctl {{ socket = unix://{socket} }}\n"
    )
    env = {"STRONGSWAN_CONF": str(conf), "SWANCTL_DIR": str(swanctl)}
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs = []
    try:
        for argv in (
            ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            ["addr", "add", f"{ME}/{NET.prefixlen}", "dev", "v0"],
            ["link", "set", "v0", "up"],
            ["link", "set", "v1", "up"],
        ):
            subprocess.run(["ip", "-n", ns, *argv], check=True)
        procs.append(
            spawn(
                ["ip", "netns", "exec", ns, "env", *(f"{k}={v}" for k, v in env.items()), CHARON],
                log_file=tmp / "charon.stdout",
            )
        )
        deadline = time.monotonic() + 15
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        sh(
            ns,
            "env",
            *(f"{k}={v}" for k, v in env.items()),
            "swanctl",
            "--load-creds",
            "--noprompt",
            "--uri",
            f"unix://{socket}",
        )
        pid = charon_pid(ns)
        before = rss_mb(pid)
        policy = Policy(
            address=ME,
            ike_proposals=("aes128gcm16-prfsha256-x25519",),
            esp_proposals=("aes128gcm16-x25519",),
            rekey_minutes=60,
            dpd_seconds=DPD_SECONDS,
            scope=scope,
            protected_ports=(7411, 12820, 13333),
        )
        hook = ViciHook(
            socket,
            policy,
            (swanctl / "x509/node.pem").read_text(),
            (swanctl / "x509ca/ca.pem").read_text(),
            frozenset(),
        )
        members = [Member(f"p{i:05d}", ME + 1 + i, "ab" * 32, State.ALIVE, 1, 0) for i in range(n)]
        t0 = time.perf_counter()
        for m in members:
            asyncio.run(hook.add(m))
        loaded = time.perf_counter() - t0
        after = rss_mb(pid)
        policies = sh(ns, "ip", "xfrm", "policy").count("\tdir ")
        idle_sas = count_ike_sas(ns, env, socket)
        for m in members[:3]:  # first packets (tyd's port, in both scopes): on demand
            code = (
                "import socket; s = socket.socket(); s.settimeout(0.5); "
                f"s.connect_ex(('{m.address}', 7411))"
            )
            subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-c", code],
                capture_output=True,
                check=False,
            )
        busy_sas = count_ike_sas(ns, env, socket)
        t1 = time.perf_counter()
        for m in members:
            asyncio.run(hook.remove(m))
        unloaded = time.perf_counter() - t1
        left = sh(ns, "ip", "xfrm", "policy").count("\tdir ")
        batched = batches(hook, members, ns)
        print(
            f"{n:>6} {scope:>9} {loaded:>8.2f} {loaded / n * 1000:>7.2f} {before:>8.1f} "
            f"{after:>8.1f} {(after - before) * 1024 / n:>8.1f} {policies:>9} {idle_sas:>8} "
            f"{busy_sas:>9} {unloaded:>9.2f} {left:>5} "
            + " ".join(f"{batched[k]:>9.2f}" for k in BATCH_COLUMNS),
            flush=True,
        )
    finally:
        stop_processes(procs)
        subprocess.run(["ip", "netns", "del", ns], check=False)


BATCH_COLUMNS = ("vici-batch", "unload-batch", "nft-1-by-1", "nft-batch")


def chunks(changes: list[Change]) -> list[list[Change]]:
    return [changes[i : i + MAX_BATCH] for i in range(0, len(changes), MAX_BATCH)]


def batches(hook: ViciHook, members: list[Member], ns: str) -> dict[str, float]:
    """Seconds for each way of applying a join (and a leave) of every member."""
    adds = [Change(ChangeKind.ADD, m) for m in members]
    removes = [Change(ChangeKind.REMOVE, m) for m in members]

    def timed(hook_: ViciHook | NftSetHook, changes: list[Change]) -> float:
        t0 = time.perf_counter()
        for chunk in chunks(changes):
            failures = asyncio.run(hook_.apply_batch(chunk))
            if failures:
                raise RuntimeError(f"{len(failures)} failed: {failures[0][1]}")
        return time.perf_counter() - t0

    out = {"vici-batch": timed(hook, adds), "unload-batch": timed(hook, removes)}
    sh(ns, "nft", "add", "table", "inet", "chaos")
    sh(ns, "nft", "add", "set", "inet", "chaos", "cluster_peers", "{ type ipv4_addr; }")
    nft = NftSetHook("inet chaos", "cluster_peers", prefix=("ip", "netns", "exec", ns))
    t0 = time.perf_counter()
    for m in members:
        asyncio.run(nft.add(m))
    out["nft-1-by-1"] = time.perf_counter() - t0
    timed(nft, removes)
    out["nft-batch"] = timed(nft, adds)
    sh(ns, "nft", "delete", "table", "inet", "chaos")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="500,2000")
    ap.add_argument("--scopes", default="all,migration")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("swanctl") is None or not Path(CHARON).exists():
        sys.exit("needs root, swanctl and charon-systemd (make setup)")
    tmp = Path(tempfile.mkdtemp(prefix="chaos-charon-"))
    try:
        pki = Pki(tmp / "pki", KeyType.ED25519)
        now = dt.datetime.now(dt.UTC)
        pki.init_ca("bench", now, 30)
        pki.issue(Identity("me", "me.bench", ME), "bench", now, 30)
        cert, key = pki.node_files("me")
        for rel, data, mode in (
            ("x509/node.pem", cert, 0o644),
            ("private/node.key", key, 0o600),
            ("x509ca/ca.pem", pki.paths.ca_cert.read_bytes(), 0o644),
        ):
            path = tmp / "swanctl" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)
        print(
            f"{'peers':>6} {'scope':>9} {'load s':>8} {'ms/peer':>7} {'RSS0 MB':>8} "
            f"{'RSS MB':>8} {'KB/peer':>8} {'policies':>9} {'IKE_SAs':>8} "
            f"{'after 3 SYNs':>9} {'unload s':>9} {'left':>5} "
            + " ".join(f"{k:>9}" for k in BATCH_COLUMNS)
        )
        print(f"(batches of up to {MAX_BATCH} changes; every column in seconds but the counts)")
        for scope in args.scopes.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                one_run(n, scope, tmp, pki)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
