"""Fixtures of the admin tests (helpers: tests/admintest.py)."""

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
from admintest import HERE, lab_cluster

from builder.admin.events import Event, Kind
from builder.admin.push import PushServer, open_push
from builder.config import load_cluster
from builder.model import Cluster
from builder.pki import ensure_ca, node_identity, pki_for
from chaosnode.push import PUSH_PATH, MemberPush, send


@pytest.fixture
def lab() -> Cluster:
    return lab_cluster()


# a real push server (builder/admin/push.py) on loopback, certificates from a CA made at run
# time: the tests of the push record (test_push.py) and of the node's pushers
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
    cluster = dataclasses.replace(
        cluster,
        serve=dataclasses.replace(cluster.serve, address=ipaddress.IPv4Address("127.0.0.1")),
    )
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
