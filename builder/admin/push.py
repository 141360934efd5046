"""serve's side of member pushes (chaosnode/push.py): HTTPS that requires a client
certificate from the cluster CA, on serve.address:serve.push_port.

Who pushes is the certificate's common name, never what the body says: a push whose node is
not the sender is refused (wrong_identity), and Slurm's jobs come only from a head. Every
push is bounded (MAX_PUSH bytes) and rate-limited per node (a token bucket); a refusal is
recorded with its reason, and the sender gets it back.
"""

from __future__ import annotations

import http.server
import ssl
from collections.abc import Callable
from typing import Any

from chaosnode.enrollment import CONTENT_TYPE, ProtocolError
from chaosnode.push import MAX_PUSH, PUSH_PATH, MemberPush

from ..enroll.server import serve_tls
from ..enroll.service import Clock, RateLimiter, log, utc_now
from ..errors import ChaosError
from ..model import Cluster
from ..pki import Pki
from ..views import fqdn
from .events import Event, Kind
from .listener import BackgroundServer

RATE_PER_SECOND = 1.0  # a node pushes a few facts a night; a burst at boot and in the morning
BURST = 10
Record = Callable[[Event], None]


def events_of(
    cluster: Cluster, sender: str, push: MemberPush, address: str, clock: Clock
) -> list[Event]:
    """Pure but for the clock: the events one accepted push records."""
    now = clock()
    mac = cluster.node(sender).mac
    if push.kind == "joined":
        return [Event(now, Kind.JOINED, sender, mac, address, "tyd", push.peers)]
    if push.kind == "left":
        return [Event(now, Kind.LEFT, sender, mac, address, push.why)]
    if push.kind == "tyd_refusals":
        return [Event(now, Kind.TYD_REFUSALS, sender, mac, address, push.why, push.count)]
    known = {n.name: n for n in cluster.nodes}
    return [
        Event(now, Kind.JOBS, name, known[name].mac, "", f"from {sender}", jobs)
        for name, jobs in push.jobs
        if name in known
    ]


def check_sender(cluster: Cluster, sender: str, push: MemberPush) -> None:
    if push.node != sender:
        raise ProtocolError(
            "wrong_identity", f"{sender} may push facts about {sender} only, not about {push.node}"
        )
    if push.kind == "jobs" and sender not in {h.name for h in cluster.heads}:
        raise ProtocolError(
            "wrong_identity", f"{sender} is no head; Slurm's jobs come from the head only"
        )


class _Handler(http.server.BaseHTTPRequestHandler):
    server: PushServer
    server_version = "chaos-push"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        source, sender = self.client_address[0], self.server.sender_of(self.connection)
        try:
            self.server.accept(sender, self.path, self._body(), source)
            self._send(200, b'{"ok":true}')
        except ProtocolError as exc:
            self.close_connection = True
            self.server.record(
                Event(
                    self.server.clock(),
                    Kind.PUSH_REFUSED,
                    sender,
                    "",
                    source,
                    f"{exc.code}: {exc.reason}"[:200],
                )
            )
            log.info("push %s node=%s refused %s: %s", source, sender, exc.code, exc.reason)
            self._send(exc.status, exc.to_json())

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        if length < 0:
            raise ProtocolError("malformed", "a Content-Length header is required")
        if length > MAX_PUSH:
            raise ProtocolError("too_large", f"the push is {length} bytes; the limit is {MAX_PUSH}")
        return self.rfile.read(length)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        log.debug("push %s %s", self.client_address[0], format % args)


class PushServer(BackgroundServer):
    thread_name = "push"

    def __init__(
        self,
        cluster: Cluster,
        pki: Pki,
        context: ssl.SSLContext,
        address: tuple[str, int],
        record: Record,
        clock: Clock = utc_now,
    ) -> None:
        self.cluster, self.pki, self.context, self.record, self.clock = (
            cluster,
            pki,
            context,
            record,
            clock,
        )
        self.limiter = RateLimiter(RATE_PER_SECOND, BURST, clock)
        super().__init__(address, _Handler)

    def sender_of(self, conn: Any) -> str:
        """The node whose certificate the TLS handshake verified: its common name is the
        node's FQDN (builder/pki.py make_node_cert); '-' for anything else."""
        cert = conn.getpeercert() or {}
        names = [str(v) for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        by_fqdn = {fqdn(self.cluster, n): n.name for n in self.cluster.nodes}
        return by_fqdn.get(names[0], "-") if len(names) == 1 else "-"

    def accept(self, sender: str, path: str, body: bytes, source: str) -> None:
        if path != PUSH_PATH:
            raise ProtocolError("not_found", f"no such endpoint {path[:80]!r}; use {PUSH_PATH}")
        if sender == "-":
            raise ProtocolError("unknown_node", "the certificate names no node of chaos.yaml")
        if self.pki.is_revoked(sender):
            raise ProtocolError("revoked", f"node {sender} is revoked")
        if not self.limiter.allow(sender):
            raise ProtocolError(
                "rate_limited",
                f"{sender} pushes too fast (at most "
                f"{RATE_PER_SECOND:g}/s, bursts of {BURST}); slow down",
            )
        push = MemberPush.from_json(body)
        check_sender(self.cluster, sender, push)
        for event in events_of(self.cluster, sender, push, source, self.clock):
            self.record(event)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10.0)
        serve_tls(self, self.context, request, client_address, "push")


def push_context(cluster: Cluster, pki: Pki, address: Any, now: Any) -> ssl.SSLContext:
    """TLS that requires a client certificate from the cluster CA; the server's own is the
    enrollment service's (issued for serve.address)."""
    cert, key = pki.service_identity(cluster.cluster.name, address, now)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=str(pki.paths.ca_cert))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def open_push(
    cluster: Cluster, pki: Pki, host: str, port: int, record: Record, clock: Clock = utc_now
) -> PushServer:
    context = push_context(cluster, pki, cluster.serve.address, clock())
    try:
        return PushServer(cluster, pki, context, (host, port), record, clock)
    except OSError as exc:
        raise ChaosError(
            f"cannot listen for member pushes on {host}:{port}: {exc.strerror or exc}"
        ) from None
