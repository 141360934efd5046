"""The enrollment service's HTTPS edge: stdlib ThreadingHTTPServer, the TLS handshake in the
connection's own thread, bounded bodies, socket timeouts, a per-source rate limit, every
request logged (source, node, outcome). The protocol logic is service.Enrollment.
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
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

from ..errors import ChaosError
from ..measured.policy import BootCheck
from ..measured.reference import REFERENCE_FILE
from ..model import Cluster
from ..pki import Pki
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


class _Handler(http.server.BaseHTTPRequestHandler):
    server: EnrollServer
    server_version = "chaos-enroll"
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        source = self.client_address[0]
        node, outcome = "-", "ok"
        try:
            node, reply = self._dispatch(source)
            self._send(200, reply)
        except ProtocolError as exc:
            node = getattr(exc, "node", node)
            outcome = f"refused {exc.code}: {exc.reason}"
            self._send(exc.status, exc.to_json())
        except Exception as exc:  # a bug or a broken PKI: say so, keep serving
            outcome = f"internal error {type(exc).__name__}: {exc}"
            self._send(500, ProtocolError("internal", "the service failed; see its log")
                       .to_json())
        log.info("enroll %s %s node=%s %s", source, self._logged_path(), node, outcome)

    def _logged_path(self) -> str:
        """The path as sent by a stranger: quoted and cut unless it is one of ours."""
        return self.path if self.path in PATHS else repr(self.path[:80])

    def _dispatch(self, source: str) -> tuple[str, bytes]:
        if not self.server.limiter.allow(source):
            self.close_connection = True
            raise ProtocolError("rate_limited", "too many requests from this address; slow "
                                "down")
        if self.path not in PATHS:
            raise ProtocolError("not_found", f"no such endpoint {self.path[:80]!r}; use "
                                f"{', '.join(PATHS)}")
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
            raise ProtocolError("too_large", f"the body is {length} bytes; the limit is "
                                f"{limit}")
        return self.rfile.read(length)

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._send(405, ProtocolError("not_found", "only POST is served here").to_json())
        log.info("enroll %s %s %s node=- refused method", self.client_address[0],
                 self.command, self._logged_path())

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

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """Errors found by the stdlib (a bad request line, an unknown method) as refusals."""
        self.close_connection = True
        refusal = ProtocolError("not_found" if code in (404, 405, 501) else "malformed",
                                f"HTTP {code}: {message or 'bad request'}")
        log.info("enroll %s - node=- refused %s: %s", self.client_address[0], refusal.code,
                 refusal.reason)
        with contextlib.suppress(OSError):
            self._send(code, refusal.to_json())

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        log.debug("http %s %s", self.client_address[0], format % args)


class EnrollServer(http.server.ThreadingHTTPServer):
    """HTTPS: the TLS handshake runs in the connection's own thread, under a timeout."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, enrollment: Enrollment, context: ssl.SSLContext,
                 limiter: RateLimiter) -> None:
        settings = enrollment.settings
        self.enrollment, self.context, self.limiter = enrollment, context, limiter
        self.settings = settings
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        super().__init__((str(settings.address), settings.port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("enroll %s: too many connections; dropped", client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.settings.socket_timeout)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("enroll %s: TLS handshake failed: %s", client_address[0], exc)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError) as exc:
            log.info("enroll %s: connection dropped: %s", client_address[0], exc)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("enroll %s: connection failed", client_address[0])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"https://{host!s}:{port}"

    def start_background(self) -> threading.Thread:
        """Serve in a daemon thread (for `chaos-build serve` and tests); stop with stop()."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                  daemon=True, name="enroll")
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def open_service(cluster: Cluster, config: Path, pki: Pki, settings: ServiceSettings,
                 clock: Clock = utc_now, reference: Path | None = None) -> EnrollServer:
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
    enrollment = Enrollment(cluster, pki, registry_path(cluster, config),
                            PendingStore(pki.paths.root / PENDING_FILE), settings, clock,
                            boot_check=BootCheck(cluster.security.measured_boot, reference))
    limiter = RateLimiter(settings.rate_per_second, settings.burst, clock)
    try:
        return EnrollServer(enrollment, context, limiter)
    except OSError as exc:
        raise ChaosError(f"cannot listen on {settings.address}:{settings.port}: "
                         f"{exc.strerror or exc}") from None


def _for_node(node: str, answer: Callable[[], bytes]) -> tuple[str, bytes]:
    """The reply to a request that names its node; a refusal is logged with that node."""
    try:
        return node, answer()
    except ProtocolError as exc:
        raise Refused(exc.code, exc.reason, node) from None
