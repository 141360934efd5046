"""The adapters against the real things, as root, in network namespaces made here:
nft set changes show in `nft list set`; VICI load-conn shows in `swanctl --list-conns`."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import name, raw_config

from builder.model import KeyType
from builder.pki import Identity, Pki
from builder.run import spawn, stop_processes
from chaosnode.ipsec import Policy
from tyd.errors import HookError
from tyd.hooks import HookRunner
from tyd.ipsec import ViciHook
from tyd.member import Member, State
from tyd.membership import Change, ChangeKind
from tyd.nft import NftSetHook

pytestmark = pytest.mark.integration

CHARON = Path("/usr/sbin/charon-systemd")
POLICY = Policy(
    ipaddress.IPv4Address("10.99.0.11"),
    ("aes128gcm16-prfsha256-x25519",),
    ("aes128gcm16-x25519",),
    60,
    30,
    "all",
    (7411,),
)


def need(tool: str) -> str:
    path = shutil.which(tool) or (
        str(CHARON) if tool == "charon-systemd" and CHARON.exists() else None
    )
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def member(i: int, addr: str) -> Member:
    return Member(name(i), ipaddress.IPv4Address(addr), "ab" * 32, State.ALIVE, 1, 0)


@pytest.fixture
def netns() -> Iterator[str]:
    need("ip")
    ns = f"tyd-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def in_ns(ns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def test_nft_hook_adds_and_removes_set_elements(netns: str) -> None:
    need("nft")
    in_ns(netns, "nft", "add", "table", "inet", "chaos")
    in_ns(netns, "nft", "add", "set", "inet", "chaos", "cluster_peers", "{ type ipv4_addr; }")
    static = ipaddress.IPv4Address("10.99.0.12")
    hook = NftSetHook(
        "inet chaos", "cluster_peers", frozenset({static}), prefix=("ip", "netns", "exec", netns)
    )

    def elements() -> str:
        return in_ns(netns, "nft", "list", "set", "inet", "chaos", "cluster_peers")

    async def scenario() -> None:
        await hook.add(member(20, "10.99.0.20"))
        await hook.add(member(21, "10.99.0.21"))
        await hook.add(member(20, "10.99.0.20"))  # idempotent
        await hook.add(member(2, "10.99.0.12"))
        listed = elements()
        assert "10.99.0.20" in listed and "10.99.0.21" in listed and "10.99.0.12" in listed
        await hook.remove(member(20, "10.99.0.20"))
        await hook.remove(member(20, "10.99.0.20"))  # already gone: not an error
        await hook.remove(member(2, "10.99.0.12"))  # static: stays in the rendered set
        listed = elements()
        assert "10.99.0.20" not in listed and "10.99.0.21" in listed
        assert "10.99.0.12" in listed
        wrong = NftSetHook("inet chaos", "no_such_set", prefix=("ip", "netns", "exec", netns))
        with pytest.raises(HookError, match="no_such_set"):
            await wrong.add(member(22, "10.99.0.22"))

    asyncio.run(scenario())


def add(i: int, addr: str) -> Change:
    return Change(ChangeKind.ADD, member(i, addr))


def remove(i: int, addr: str) -> Change:
    return Change(ChangeKind.REMOVE, member(i, addr))


def test_nft_hook_applies_a_batch_as_one_transaction(netns: str) -> None:
    """A join of many peers is one `nft -f -`: adds (one twice), the removal of an element
    that was never there and of a static peer cannot fail it; a batch against a missing set
    names every change that failed."""
    need("nft")
    in_ns(netns, "nft", "add", "table", "inet", "chaos")
    in_ns(netns, "nft", "add", "set", "inet", "chaos", "cluster_peers", "{ type ipv4_addr; }")
    static = ipaddress.IPv4Address("10.99.0.12")
    prefix = ("ip", "netns", "exec", netns)
    hook = NftSetHook("inet chaos", "cluster_peers", frozenset({static}), prefix=prefix)
    batch = [add(20 + i, f"10.99.0.{20 + i}") for i in range(40)]
    batch += [add(20, "10.99.0.20"), add(2, "10.99.0.12"), remove(21, "10.99.0.21")]
    batch += [remove(99, "10.99.0.99"), remove(2, "10.99.0.12")]
    assert asyncio.run(hook.apply_batch(batch)) == []
    listed = in_ns(netns, "nft", "list", "set", "inet", "chaos", "cluster_peers")
    assert "10.99.0.20" in listed and "10.99.0.59" in listed and "10.99.0.12" in listed
    assert "10.99.0.21" not in listed and "10.99.0.99" not in listed
    wrong = NftSetHook("inet chaos", "no_such_set", prefix=prefix)
    failures = asyncio.run(wrong.apply_batch([add(22, "10.99.0.22"), add(23, "10.99.0.23")]))
    assert [c.member.name for c, _ in failures] == [name(22), name(23)]
    assert all("no_such_set" in str(exc) for _, exc in failures)


class Recorder:
    """A hook that records what it was asked, one change or a batch at a time."""

    name = "recorder"

    def __init__(self, batches: bool, fail: str = "") -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        if batches:
            self.apply_batch = self._apply_batch

    async def add(self, m: Member) -> None:
        self.calls.append([f"+{m.name}"])
        if m.name == self.fail:
            raise HookError(f"{m.name} refused")

    async def remove(self, m: Member) -> None:
        self.calls.append([f"-{m.name}"])

    async def _apply_batch(self, changes: list[Change]) -> list[tuple[Change, Exception]]:
        self.calls.append(
            [("+" if c.kind is ChangeKind.ADD else "-") + c.member.name for c in changes]
        )
        return [(c, HookError("refused")) for c in changes if c.member.name == self.fail]


def test_hook_runner_hands_a_batch_hook_every_queued_change_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    batching, single = Recorder(batches=True, fail=name(3)), Recorder(batches=False)
    errors: list[int] = []
    runner = HookRunner([batching, single], logging.getLogger("test"), lambda: errors.append(1))
    changes = [add(i, f"10.99.0.{i}") for i in range(1, 6)] + [remove(2, "10.99.0.2")]

    async def scenario() -> None:
        for change in changes:
            runner.submit(change)
        assert not runner.settled(name(2))
        task = asyncio.create_task(runner.run())
        await runner.drain(5)
        task.cancel()
        assert runner.settled(name(2)) and runner.settled(name(5))

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    order = ["+" + name(i) for i in range(1, 6)] + ["-" + name(2)]
    assert batching.calls == [order]
    assert single.calls == [[c] for c in order]
    assert errors == [1]
    assert f"hook recorder: add {name(3)} (10.99.0.3) failed: refused" in caplog.text


STRONGSWAN_CONF = """\
charon-systemd {{
  load = random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pem openssl \
kdf kernel-netlink socket-default vici
  install_routes = no
  plugins {{
    vici {{
      socket = unix://{dir}/charon.vici
    }}
  }}
  filelog {{
    log {{
      path = {dir}/charon.log
      default = 1
    }}
  }}
  journal {{
    default = -1
  }}
}}
"""


@pytest.fixture
def charon(netns: str, tmp_path: Path) -> Iterator[Path]:
    binary = need("charon-systemd")
    need("swanctl")
    rundir = tmp_path / "charon"
    rundir.mkdir()
    conf = rundir / "strongswan.conf"
    conf.write_text(STRONGSWAN_CONF.format(dir=rundir))
    in_ns(netns, "ip", "link", "set", "lo", "up")
    in_ns(netns, "ip", "addr", "add", "10.99.0.11/24", "dev", "lo")
    proc = spawn(["ip", "netns", "exec", netns, "env", f"STRONGSWAN_CONF={conf}", binary])
    socket_path = rundir / "charon.vici"
    deadline = time.monotonic() + 15
    try:
        while not socket_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (rundir / "charon.log").read_text() if (rundir / "charon.log").exists() else ""
                )
                raise AssertionError(f"charon did not start: {log[-2000:]}")
            time.sleep(0.05)
        yield socket_path
    finally:
        stop_processes([proc])


def list_conns(socket_path: Path) -> str:
    return subprocess.run(
        ["swanctl", "--list-conns", "--uri", f"unix://{socket_path}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


def node01_hook(pki: Pki, charon: Path) -> ViciHook:
    """node01's VICI hook; node02 (10.99.0.12) is in its rendered swanctl.conf."""
    return ViciHook(
        charon,
        POLICY,
        pki.paths.node_cert(name(1)).read_text(),
        pki.paths.ca_cert.read_text(),
        frozenset({ipaddress.IPv4Address("10.99.0.12")}),
    )


def test_vici_hook_loads_and_unloads_connections_in_a_real_charon(pki: Pki, charon: Path) -> None:
    import socket

    import vici

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(charon))
    vici.Session(sock=sock).load_key(
        {"type": "any", "data": pki.paths.node_key(name(1)).read_text()}
    )
    sock.close()
    hook = node01_hook(pki, charon)

    async def scenario() -> None:
        await hook.add(member(20, "10.99.0.20"))
        await hook.add(member(2, "10.99.0.12"))  # covered by the rendered swanctl.conf
        conns = list_conns(charon)
        assert "peer-node20: IKEv2" in conns
        assert "local:  10.99.0.11\n  remote: 10.99.0.20\n" in conns
        assert "peer-node20: TRANSPORT" in conns
        # selectors are the two hosts, never dynamic (0.0.0.0/0 would capture everything)
        assert "local:  10.99.0.11/32\n    remote: 10.99.0.20/32\n" in conns
        assert "cluster CA" in conns  # the peer must hold a cluster-CA certificate
        assert "id: 10.99.0.20" in conns  # the peer's certificate must name its address
        assert "peer-node02" not in conns
        await hook.remove(member(20, "10.99.0.20"))
        assert "peer-node20" not in list_conns(charon)
        broken = ViciHook(charon.with_name("absent.vici"), POLICY, "", "", frozenset())
        with pytest.raises(HookError, match="absent.vici"):
            await broken.add(member(21, "10.99.0.21"))

    asyncio.run(scenario())


def test_vici_hook_applies_a_batch_through_one_session(pki: Pki, charon: Path) -> None:
    """Many load-conns in one VICI session, in order; one bad change (an unload of a
    connection that is not there) is reported alone and the others are applied."""
    hook = node01_hook(pki, charon)
    batch = [add(20 + i, f"10.99.0.{20 + i}") for i in range(30)] + [add(2, "10.99.0.12")]
    assert asyncio.run(hook.apply_batch(batch)) == []
    conns = list_conns(charon)
    assert conns.count(": IKEv2") == 30 and "peer-node49: IKEv2" in conns
    assert "peer-node02" not in conns
    undo = [remove(20 + i, f"10.99.0.{20 + i}") for i in range(29)] + [remove(98, "10.99.0.98")]
    failures = asyncio.run(hook.apply_batch(undo))
    assert [c.member.name for c, _ in failures] == [name(98)]
    assert "unload-conn peer-node98" in str(failures[0][1])
    conns = list_conns(charon)
    assert conns.count(": IKEv2") == 1 and "peer-node49: IKEv2" in conns
    broken = ViciHook(charon.with_name("absent.vici"), POLICY, "", "", frozenset())
    failures = asyncio.run(broken.apply_batch([add(21, "10.99.0.21"), add(22, "10.99.0.22")]))
    assert len(failures) == 2 and all("absent.vici" in str(e) for _, e in failures)


def test_two_daemons_in_namespaces_fill_each_others_nft_set(tmp_path: Path) -> None:
    """End to end: `python -m tyd` in two namespaces joined by a veth pair; each daemon's
    nft hook adds the other to its set, and a SIGTERM (LEAVE) takes it out again."""
    need("nft")
    now = dt.datetime.now(dt.UTC)
    pki = Pki(tmp_path / "pki", KeyType.ED25519)
    pki.init_ca("chaos-lab", now, 2)
    addrs = {1: "10.231.0.1", 2: "10.231.0.2"}
    for i, addr in addrs.items():
        pki.issue(
            Identity(name(i), f"{name(i)}.lab", ipaddress.IPv4Address(addr)), "chaos-lab", now, 2
        )
    tag = uuid.uuid4().hex[:6]
    spaces = {i: f"tyd-e2e-{tag}-{i}" for i in addrs}
    procs: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for ns in spaces.values():
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                f"tyd{tag}a",
                "netns",
                spaces[1],
                "type",
                "veth",
                "peer",
                "name",
                f"tyd{tag}b",
                "netns",
                spaces[2],
            ],
            check=True,
        )
        for i, dev in ((1, f"tyd{tag}a"), (2, f"tyd{tag}b")):
            in_ns(spaces[i], "ip", "addr", "add", f"{addrs[i]}/24", "dev", dev)
            in_ns(spaces[i], "ip", "link", "set", dev, "up")
            in_ns(spaces[i], "ip", "link", "set", "lo", "up")
            in_ns(spaces[i], "nft", "add", "table", "inet", "chaos")
            in_ns(
                spaces[i],
                "nft",
                "add",
                "set",
                "inet",
                "chaos",
                "cluster_peers",
                "{ type ipv4_addr; }",
            )
            raw = raw_config(
                pki,
                i,
                7411,
                tmp_path / "run",
                seeds=(1,),
                suspect_after_seconds=20,
                remove_after_seconds=40,
            )
            raw["address"] = addrs[i]
            raw["subnet"] = str(ipaddress.ip_interface(f"{addrs[i]}/24").network)
            raw["seeds"] = [{"name": name(1), "address": addrs[1]}]
            raw["hooks"]["nft_set"] = "cluster_peers"
            cfg = tmp_path / f"tyd{i}.json"
            cfg.write_text(json.dumps(raw))
            procs[i] = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    spaces[i],
                    sys.executable,
                    "-m",
                    "tyd",
                    "--config",
                    str(cfg),
                ],
                cwd=Path(__file__).parents[2],
                stderr=subprocess.DEVNULL,
            )

        def peers(i: int) -> str:
            return in_ns(spaces[i], "nft", "list", "set", "inet", "chaos", "cluster_peers")

        poll(
            lambda: addrs[2] in peers(1) and addrs[1] in peers(2),
            20,
            "each daemon to add the other to its nft set",
        )
        procs[2].send_signal(signal.SIGTERM)
        assert procs[2].wait(15) == 0
        poll(lambda: addrs[2] not in peers(1), 10, "node02's LEAVE to empty node01's set")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for ns in spaces.values():
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
