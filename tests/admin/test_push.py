"""Member pushes over mutual TLS, with certificates from a cluster CA made at run time: a node
pushes facts about itself only, Slurm's jobs come from the head only, and an oversized or
too-fast push is refused with its reason."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import ipaddress
import shutil
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from admintest import HERE

from builder.admin.events import Event, Kind
from builder.admin.push import BURST, PushServer, open_push
from builder.config import load_cluster
from builder.model import Cluster
from builder.pki import ensure_ca, node_identity, pki_for
from chaosnode.enrollment import ProtocolError
from chaosnode.push import MAX_PUSH, PUSH_PATH, MemberPush, send

NOW = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)  # the service's clock: it stands still


@dataclass
class PushLab:
    cluster: Cluster
    pki_root: Path
    server: PushServer
    recorded: list[Event]

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def files(self, node: str) -> tuple[Path, Path, Path]:
        root = self.pki_root
        return root / "nodes" / f"{node}.pem", root / "nodes" / f"{node}.key", root / "ca.pem"

    def push(self, sender: str, push: MemberPush) -> None:
        send("127.0.0.1", self.port, push, *self.files(sender))

    def raw(self, sender: str, body: bytes, length: int | None = None) -> tuple[int, bytes]:
        cert, key, ca = self.files(sender)
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=10)
        try:
            conn.putrequest("POST", PUSH_PATH)
            conn.putheader("Content-Length", str(len(body) if length is None else length))
            conn.endheaders()
            conn.send(body)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def refusals(self) -> list[Event]:
        return [e for e in self.recorded if e.kind is Kind.PUSH_REFUSED]


@pytest.fixture
def push_lab(tmp_path) -> Iterator[PushLab]:
    config = tmp_path / "chaos.yaml"
    shutil.copy(HERE / "lab.yaml", config)
    cluster = load_cluster(config)[0]
    # the service certificate is for serve.address; here that is loopback
    cluster = dataclasses.replace(cluster, serve=dataclasses.replace(
        cluster.serve, address=ipaddress.IPv4Address("127.0.0.1")))
    pki = pki_for(cluster, config)
    issued = dt.datetime.now(dt.UTC)  # TLS checks validity against the real clock
    ensure_ca(cluster, pki, issued)
    for node in cluster.nodes:
        pki.issue(node_identity(cluster, node), cluster.cluster.name, issued, 1)
    recorded: list[Event] = []
    server = open_push(cluster, pki, "127.0.0.1", 0, recorded.append, clock=lambda: NOW)
    server.start_background()
    try:
        yield PushLab(cluster, pki.paths.root, server, recorded)
    finally:
        server.stop()


def test_a_node_pushes_its_own_join(push_lab):
    push_lab.push("node02", MemberPush("node02", "joined", peers=3))
    (e,) = push_lab.recorded
    assert (e.kind, e.node, e.value, e.address, e.mac) == \
        (Kind.JOINED, "node02", 3, "127.0.0.1", "52:54:00:99:00:12")


def test_each_kind_of_push_is_recorded(push_lab):
    push_lab.push("node03", MemberPush("node03", "tyd_refusals", count=7, why="bad cert"))
    push_lab.push("node03", MemberPush("node03", "left", why="morning"))
    push_lab.push("node01", MemberPush("node01", "jobs", jobs=(("node02", 4), ("node03", 1))))
    got = [(e.kind, e.node, e.detail, e.value) for e in push_lab.recorded]
    assert got == [(Kind.TYD_REFUSALS, "node03", "bad cert", 7),
                   (Kind.LEFT, "node03", "morning", 0),
                   (Kind.JOBS, "node02", "from node01", 4),
                   (Kind.JOBS, "node03", "from node01", 1)]


def test_a_push_from_node02_about_node03_is_refused(push_lab):
    with pytest.raises(ProtocolError) as err:
        push_lab.push("node02", MemberPush("node03", "left", why="morning"))
    assert err.value.code == "wrong_identity" and "node02 may push facts about node02" \
        in err.value.reason
    (e,) = push_lab.recorded
    assert (e.kind, e.node) == (Kind.PUSH_REFUSED, "node02") and "wrong_identity" in e.detail


def test_jobs_come_from_the_head_only(push_lab):
    with pytest.raises(ProtocolError, match="no head"):
        push_lab.push("node02", MemberPush("node02", "jobs", jobs=(("node02", 9),)))
    assert [e.kind for e in push_lab.recorded] == [Kind.PUSH_REFUSED]


def test_an_oversized_push_is_refused_unread(push_lab):
    status, body = push_lab.raw("node02", b"", length=MAX_PUSH + 1)
    assert status == 413 and b"too_large" in body
    assert "too_large" in push_lab.refusals()[0].detail


def test_a_malformed_push_is_refused(push_lab):
    status, body = push_lab.raw("node02", b'{"node": "node02", "kind": "reboot"}')
    assert status == 400 and b"malformed" in body


def test_a_node_that_pushes_too_fast_is_refused(push_lab):
    """The clock stands still: the bucket never refills, the push after the burst is
    refused (no timing involved)."""
    for _ in range(BURST):
        push_lab.push("node02", MemberPush("node02", "joined", peers=1))
    with pytest.raises(ProtocolError) as err:
        push_lab.push("node02", MemberPush("node02", "joined", peers=1))
    assert err.value.code == "rate_limited"
    push_lab.push("node03", MemberPush("node03", "joined", peers=1))  # others are not slowed
    assert len([e for e in push_lab.recorded if e.kind is Kind.JOINED]) == BURST + 1


def test_a_client_without_a_certificate_gets_no_hearing(push_lab):
    context = ssl.create_default_context(cafile=str(push_lab.files("node02")[2]))
    conn = http.client.HTTPSConnection("127.0.0.1", push_lab.port, context=context, timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        conn.request("POST", PUSH_PATH, MemberPush("node02", "joined").to_json())
        conn.getresponse().read()
    conn.close()
    assert push_lab.recorded == []


def test_the_record_round_trips():
    for push in (MemberPush("node02", "joined", peers=3),
                 MemberPush("node02", "left", why="tyd"),
                 MemberPush("node02", "tyd_refusals", count=2, why="x"),
                 MemberPush("node01", "jobs", jobs=(("node02", 1),))):
        assert MemberPush.from_json(push.to_json()) == push


def test_the_node_side_command_line(push_lab, monkeypatch, capsys):
    """`python3 -m chaosnode.push` with the node's files (here: the run-time PKI's)."""
    from chaosnode import push as node_push

    cert, key, ca = push_lab.files("node01")
    monkeypatch.setattr(node_push, "NODE_CERT_PATH", str(cert))
    monkeypatch.setattr(node_push, "NODE_KEY_PATH", str(key))
    monkeypatch.setattr(node_push, "CA_CERT_PATH", str(ca))
    argv = ["--node", "node01", "--server", "127.0.0.1", "--port", str(push_lab.port)]
    assert node_push.main(["jobs", *argv, "--jobs", "node02=3"]) == 0
    assert [(e.kind, e.node, e.value) for e in push_lab.recorded] == [(Kind.JOBS, "node02", 3)]
    assert node_push.main(["left", *argv[:1], "node02", *argv[2:], "--why", "morning"]) == 1
    assert "not taken: wrong_identity" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        node_push.main(["jobs", *argv, "--jobs", "node02"])
