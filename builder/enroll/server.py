"""The enrollment service's HTTPS edge: stdlib ThreadingHTTPServer, the TLS handshake in the
connection's own thread, bounded bodies, socket timeouts and a total deadline per request,
connection limits per source and in all, a per-source rate limit, every request logged
(source, node, outcome) and counted. The protocol logic is service.Enrollment.
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaosnode.enrollment import (
    APPROVAL_PATH,
    CONTENT_TYPE,
    CRL_PATH,
    FINISH_PATH,
    MAX_BODY,
    MAX_FINISH_BODY,
    PATHS,
    START_PATH,
    ApprovalRequest,
    FinishRequest,
    ProtocolError,
    StartRequest,
)

from ..admin import events as admin_events
from ..errors import ChaosError
from ..measured.policy import BootCheck
from ..measured.reference import REFERENCE_FILE
from ..model import Cluster
from ..pki import Pki
from ..security.model import SecurityModel
from .registry import PENDING_FILE, PendingStore, load_registry, registry_path
from .service import (
    Clock,
    Enrollment,
    RateLimiter,
    Refused,
    ServiceSettings,
    log,
    utc_now,
)


class RequestDeadline(TimeoutError):
    """A request that was not all read within ServiceSettings.request_seconds."""


class _DeadlineReader(io.RawIOBase):
    """A connection's reads: each bounded by the idle timeout, and all reads of one request
    by its total deadline, counted from the request's first byte (a per-read timeout alone
    is reset by every byte a dribbling client sends)."""

    def __init__(self, sock: socket.socket, idle: float, total: float) -> None:
        super().__init__()
        self._sock, self._idle, self._total = sock, idle, total
        self._deadline: float | None = None
        self.cut = False  # this request was cut at its deadline

    def next_request(self) -> None:
        self._deadline, self.cut = None, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = self._idle
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - time.monotonic())
            if timeout <= 0:
                raise self._cut()
        self._sock.settimeout(timeout)
        try:
            n = self._sock.recv_into(buffer)
        except TimeoutError:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise self._cut() from None
            raise
        finally:
            self._sock.settimeout(self._idle)  # the reply's writes: the idle timeout
        if n and self._deadline is None:
            self._deadline = time.monotonic() + self._total
        return n

    def _cut(self) -> RequestDeadline:
        self.cut = True
        return RequestDeadline(f"the request took more than {self._total:g} s")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: EnrollServer
    server_version = "chaos-enroll"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        s = self.server.settings
        self._reads = _DeadlineReader(self.connection, s.socket_timeout, s.request_seconds)
        self.rfile = io.BufferedReader(self._reads)

    def handle_one_request(self) -> None:
        self._reads.next_request()  # each request of a kept-alive connection has its own
        super().handle_one_request()  # the stdlib ends a request whose reads time out
        if self._reads.cut:
            self.close_connection = True
            self.server.count("deadline")
            log.info(
                "enroll %s: cut at the request deadline (%g s)",
                self.client_address[0],
                self.server.settings.request_seconds,
            )

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        source = self.client_address[0]
        node, outcome = "-", "ok"
        refusal: ProtocolError | None = None
        try:
            node, reply = self._dispatch(source)
            self._send(200, reply)
            self.server.count("ok")
        except ProtocolError as exc:
            node, refusal = getattr(exc, "node", node), exc
            outcome = f"refused {exc.code}: {exc.reason}"
            self.server.count(f"refused_{exc.code}")
            self._send(exc.status, exc.to_json())
        except (TimeoutError, ConnectionError, ssl.SSLError) as exc:  # the deadline, a
            # timeout or a reset: nobody to answer (any other OSError is ours: a 500)
            self.close_connection = True
            outcome = f"dropped: {exc or type(exc).__name__}"
            if not self._reads.cut:
                self.server.count("dropped")
        except Exception as exc:  # a bug or a broken PKI: say so, keep serving
            outcome = f"internal error {type(exc).__name__}: {exc}"
            self.server.count("internal_errors")
            log.error("enroll %s: internal error", source, exc_info=exc)
            self._send(500, ProtocolError("internal", "the service failed; see its log").to_json())
        log.info("enroll %s %s node=%s %s", source, self._logged_path(), node, outcome)
        admin_events.enrollment_outcome(
            self.server.enrollment.cluster, self.path, source, node, refusal
        )  # admin: the event record

    def _logged_path(self) -> str:
        """The path as sent by a stranger: quoted and cut unless it is one of ours."""
        return self.path if self.path in PATHS else repr(self.path[:80])

    def _dispatch(self, source: str) -> tuple[str, bytes]:
        if not self.server.limiter.allow(source):
            self.close_connection = True
            raise ProtocolError("rate_limited", "too many requests from this address; slow down")
        if self.path not in PATHS:
            raise ProtocolError(
                "not_found", f"no such endpoint {self.path[:80]!r}; use {', '.join(PATHS)}"
            )
        body = self._body()
        service = self.server.enrollment
        if self.path == START_PATH:
            req = StartRequest.from_json(body)
            return _for_node(req.node, lambda: service.start(req, source).to_json())
        if self.path == APPROVAL_PATH:
            boot = ApprovalRequest.from_json(body)
            return _for_node(boot.node, lambda: service.approval(boot, source).to_json())
        node, reply = service.finish(FinishRequest.from_json(body), source)
        return node, reply.to_json()

    def _body(self) -> bytes:
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ProtocolError("malformed", "a Content-Length header is required")
        limit = MAX_FINISH_BODY if self.path == FINISH_PATH else MAX_BODY  # the event log
        if length > limit:
            self.close_connection = True  # the body is never read
            raise ProtocolError("too_large", f"the body is {length} bytes; the limit is {limit}")
        return self.rfile.read(length)

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._send(405, ProtocolError("not_found", "only POST is served here").to_json())
        log.info(
            "enroll %s %s %s node=- refused method",
            self.client_address[0],
            self.command,
            self._logged_path(),
        )

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """The current CRL, for nodes that refresh theirs during the night."""
        source = self.client_address[0]
        if self.path != CRL_PATH:
            self._refuse_method()
            return
        if not self.server.limiter.allow(source):
            self.close_connection = True
            self._send(429, ProtocolError("rate_limited", "too many requests").to_json())
            log.info("enroll %s GET %s refused rate_limited", source, CRL_PATH)
            return
        crl = self.server.enrollment.pki.crl_pem()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-pem-file")
        self.send_header("Content-Length", str(len(crl)))
        self.end_headers()
        self.wfile.write(crl)
        log.info("enroll %s GET %s ok", source, CRL_PATH)

    do_PUT = do_DELETE = do_HEAD = _refuse_method  # noqa: N815

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by the stdlib (a bad request line, an unknown method) as refusals."""
        self.close_connection = True
        refusal = ProtocolError(
            "not_found" if code in (404, 405, 501) else "malformed",
            f"HTTP {code}: {message or 'bad request'}",
        )
        log.info(
            "enroll %s - node=- refused %s: %s",
            self.client_address[0],
            refusal.code,
            refusal.reason,
        )
        with contextlib.suppress(OSError):
            self._send(code, refusal.to_json())

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        log.debug("http %s %s", self.client_address[0], format % args)


class EnrollServer(http.server.ThreadingHTTPServer):
    """HTTPS: the TLS handshake runs in the connection's own thread, under a timeout."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(
        self, enrollment: Enrollment, context: ssl.SSLContext, limiter: RateLimiter
    ) -> None:
        settings = enrollment.settings
        self.enrollment, self.context, self.limiter = enrollment, context, limiter
        self.settings = settings
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        self._per_source: collections.Counter[str] = collections.Counter()
        # connections admitted (conns) or not (busy, busy_source); requests by outcome:
        # ok, refused_<code>, deadline, dropped, internal_errors (a bug, never a refusal;
        # the tests expect 0 under attack)
        self.counters: collections.Counter[str] = collections.Counter(internal_errors=0)
        self._lock = threading.Lock()
        super().__init__((str(settings.address), settings.port), _Handler)

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def process_request(self, request: Any, client_address: Any) -> None:
        source = client_address[0]
        if not self._admit(source):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(source)
            raise

    def _admit(self, source: str) -> bool:
        """The per-source limit first, so that one address never uses up the global room."""
        with self._lock:
            if self._per_source[source] >= self.settings.max_connections_per_source:
                self.counters["busy_source"] += 1
                if self.counters["busy_source"] % 100 == 1:
                    log.warning(
                        "enroll %s: holds %d connections; refusing more",
                        source,
                        self._per_source[source],
                    )
                return False
            if not self._slots.acquire(blocking=False):
                self.counters["busy"] += 1
                log.warning("enroll %s: too many connections; dropped", source)
                return False
            self._per_source[source] += 1
            self.counters["conns"] += 1
            return True

    def _release(self, source: str) -> None:
        with self._lock:
            self._slots.release()
            self._per_source[source] -= 1
            if self._per_source[source] <= 0:
                del self._per_source[source]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(client_address[0])

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.settings.socket_timeout)
        # the handler writes a reply's headers and body in two sends: without NODELAY the
        # body waits for the client's delayed ACK (~40 ms a request, 25 requests/s a thread)
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        serve_tls(self, self.context, request, client_address, "enroll")

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("enroll %s: connection failed", client_address[0])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"https://{host!s}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve in a daemon thread (for `chaos-build serve` and tests); stop with stop()."""
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="enroll"
        )
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def open_service(
    cluster: Cluster,
    config: Path,
    pki: Pki,
    settings: ServiceSettings,
    clock: Clock = utc_now,
    reference: Path | None = None,
) -> EnrollServer:
    """Bind the enrollment service (not yet serving: call serve_forever or
    start_background). Issues its TLS certificate from the cluster CA for settings.address
    (kept while the address stays the same); never touches the CA key."""
    if not pki.has_ca():
        raise ChaosError(f"no cluster CA in {pki.paths.root}: run `chaos-build pki init`")
    now = clock()
    cert, key = pki.service_identity(cluster.cluster.name, settings.address, now)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    load_registry(registry_path(cluster, config), cluster)  # a bad registry fails here, early
    # the measured-boot reference the build wrote beside its output (out/ by chaos.yaml)
    reference = reference or config.resolve().parent / "out" / REFERENCE_FILE
    enrollment = Enrollment(
        cluster,
        pki,
        registry_path(cluster, config),
        PendingStore(pki.paths.root / PENDING_FILE),
        settings,
        clock,
        boot_check=BootCheck(cluster.section(SecurityModel).security.measured_boot, reference),
    )
    limiter = RateLimiter(settings.rate_per_second, settings.burst, clock)
    try:
        return EnrollServer(enrollment, context, limiter)
    except OSError as exc:
        raise ChaosError(
            f"cannot listen on {settings.address}:{settings.port}: {exc.strerror or exc}"
        ) from None


def _for_node(node: str, answer: Callable[[], bytes]) -> tuple[str, bytes]:
    """The reply to a request that names its node; a refusal is logged with that node."""
    try:
        return node, answer()
    except ProtocolError as exc:
        raise Refused(exc.code, exc.reason, node) from None


def serve_tls(
    server: Any, context: ssl.SSLContext, request: Any, client_address: Any, what: str
) -> None:
    """One connection of a TLS server (enrollment, member pushes): the handshake, then the
    server's handler; a failed handshake or a dropped client is logged, never raised."""
    try:
        tls = context.wrap_socket(request, server_side=True)
    except (ssl.SSLError, OSError) as exc:
        log.info("%s %s: TLS handshake failed: %s", what, client_address[0], exc)
        return
    try:
        server.RequestHandlerClass(tls, client_address, server)
    except (OSError, ssl.SSLError) as exc:
        log.info("%s %s: connection dropped: %s", what, client_address[0], exc)
    finally:
        with contextlib.suppress(OSError):
            tls.close()
