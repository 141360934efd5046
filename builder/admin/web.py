"""The admin listener: the page (`/`), `/metrics`, `/api/status.json`, on
serve.admin_address:serve.admin_port (loopback by default, never the lab segment).

Protection: a token, generated once into RUN_DIR/admin.token (mode 0600, owned by whoever
runs serve). The browser logs in once with /login?token=... (the token then lives in an
HttpOnly, SameSite=Strict cookie); Prometheus sends it as a bearer token
(`authorization: {credentials_file: admin.token}`). Why not client certificates: an admin's
browser would need a PKCS#12 import per machine and the cluster CA must not sign staff
identities; a token file readable only by serve's user is one `ssh -L` plus one file away.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import json
import os
import secrets
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import jinja2

from ..enroll.service import log
from ..errors import ChaosError
from ..model import Cluster
from ..night.model import NightModel
from . import events, metrics
from .listener import BackgroundServer
from .night import night_view
from .status import COLUMNS, Report, as_json, current_night, fold, night_span, rows

TOKEN_FILE: Final = "admin.token"
COOKIE: Final = "chaos_admin"
HERE = Path(__file__).parent
# Chart.js from Debian's libjs-chart.js (Makefile APT_PACKAGES), served from here: no CDN
CHART_JS: Final = Path("/usr/share/javascript/chart.js/chart.min.js")
STATIC: Final = {
    "/static/chart.min.js": (CHART_JS, "text/javascript"),
    "/static/admin.js": (HERE / "static" / "admin.js", "text/javascript"),
    "/static/admin.css": (HERE / "static" / "admin.css", "text/css"),
}
Clock = Callable[[], dt.datetime]


def ensure_token(run_dir: Path) -> str:
    """The admin token: read, or made once (0600, created exclusively: never world-readable
    for an instant)."""
    path = run_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            raise ChaosError(
                f"{path} is readable by others; chmod 600 it (or delete it and "
                "serve makes a new one)"
            ) from None
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"chaos admin session", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class PageData:
    """Everything the page shows, computed in Python; the template only loops."""

    cluster: str
    night: str
    heading: str
    totals: tuple[tuple[str, int], ...]
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    charts: str  # JSON for admin.js


class AdminView:
    """Reads the record for each request (a read-only connection of its own)."""

    def __init__(
        self, cluster: Cluster, db_path: Path, clock: Clock, dropped: Callable[[], int] = lambda: 0
    ) -> None:
        self.cluster, self.db_path, self.clock, self.dropped = cluster, db_path, clock, dropped
        self.tz = ZoneInfo(cluster.section(NightModel).schedule.time_zone)

    def tonight(self) -> tuple[Report, list[events.Event], dt.date]:
        now = self.clock()
        date = current_night(self.cluster, now)
        since, _ = night_span(self.cluster, date)
        db = events.connect(self.db_path, readonly=True)
        try:
            evs = events.read(db, since, now)
        finally:
            db.close()
        return fold(self.cluster, evs, since, now), evs, date

    def page(self) -> PageData:
        report, evs, date = self.tonight()
        view = night_view(self.cluster, evs, report.since, report.until, self.tz)
        charts = json.dumps(
            {
                "timeline": asdict(view.timeline),
                "join": {"labels": view.join_bins, "counts": view.join_counts},
                "refusals": dict(view.refusals),
            }
        ).replace("<", "\\u003c")
        return PageData(
            self.cluster.cluster.name,
            date.isoformat(),
            f"{self.cluster.cluster.name}: the night of {date.isoformat()}, "
            f"as of {report.until.astimezone(self.tz):%H:%M:%S}",
            tuple(report.totals().items()),
            COLUMNS,
            tuple(rows(report, self.tz)),
            charts,
        )

    def metrics(self) -> bytes:
        report, evs, _ = self.tonight()
        view = night_view(self.cluster, evs, report.since, report.until, self.tz)
        return metrics.exposition(metrics.families(report, view, evs, self.dropped()))


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=True,
)


def render_page(data: PageData) -> str:
    return _env.get_template("admin.html.j2").render(page=data)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: AdminServer
    server_version = "chaos-admin"

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/login":
            self._login(urllib.parse.parse_qs(url.query).get("token", [""])[0])
            return
        if not self._authorized():
            self._send(
                401,
                b"log in: open /login?token=... with the token in serve's run dir (admin.token)\n",
                "text/plain",
            )
            return
        try:
            self._route(url.path)
        except events.EventDbError as exc:
            self._send(503, f"{exc}\n".encode(), "text/plain")

    def _route(self, path: str) -> None:
        view = self.server.view
        if path == "/":
            self._send(200, render_page(view.page()).encode(), "text/html; charset=utf-8")
        elif path == "/metrics":
            self._send(200, view.metrics(), "text/plain; version=0.0.4")
        elif path == "/api/status.json":
            self._send(200, as_json(view.tonight()[0]).encode(), "application/json")
        elif path in STATIC:
            file, kind = STATIC[path]
            try:
                self._send(200, file.read_bytes(), kind)
            except FileNotFoundError:
                self._send(
                    404,
                    f"{file} is missing: apt-get install libjs-chart.js\n".encode(),
                    "text/plain",
                )
        else:
            self._send(404, b"no such page\n", "text/plain")

    def _authorized(self) -> bool:
        token = self.server.token
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), token):
            return True
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and hmac.compare_digest(value, cookie_value(token)):
                return True
        return False

    def _login(self, given: str) -> None:
        if not hmac.compare_digest(given, self.server.token):
            self._send(403, b"wrong token\n", "text/plain")
            return
        self.send_response(303)
        self.send_header(
            "Set-Cookie",
            f"{COOKIE}={cookie_value(self.server.token)}; HttpOnly; SameSite=Strict; Path=/",
        )
        self.send_header("Location", "/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        # never the query (a login carries the token)
        log.debug("admin %s %s", self.client_address[0], self.command)


class AdminServer(BackgroundServer):
    thread_name = "admin"

    def __init__(self, view: AdminView, token: str, address: tuple[str, int]) -> None:
        self.view, self.token = view, token
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def open_admin(view: AdminView, token: str, host: str, port: int) -> AdminServer:
    try:
        return AdminServer(view, token, (host, port))
    except OSError as exc:
        raise ChaosError(
            f"cannot listen for the admin page on {host}:{port}: "
            f"{exc.strerror or exc}; set serve.admin_address/admin_port"
        ) from None
