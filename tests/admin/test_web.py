"""The admin listener on loopback: the token login, the page's table from the record,
/metrics in Prometheus' text format with counts that match the record."""

from __future__ import annotations

import datetime as dt
import http.client
import stat
from collections.abc import Iterator

import pytest
from admintest import night_events, write_db
from prometheus_client.parser import text_string_to_metric_families

from builder.admin import web
from builder.admin.web import AdminView, ensure_token, open_admin
from builder.errors import ChaosError

# the trouble night, at 23:00 in Berlin
AT = dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.UTC)


@pytest.fixture
def admin(lab, tmp_path) -> Iterator[tuple[web.AdminServer, str]]:
    db = write_db(tmp_path / "events.sqlite", night_events("trouble"))
    token = ensure_token(tmp_path)
    server = open_admin(AdminView(lab, db, lambda: AT), token, "127.0.0.1", 0)
    server.start_background()
    try:
        yield server, token
    finally:
        server.stop()


def get(
    server: web.AdminServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)  # type: ignore[misc]
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


def test_the_token_file_is_made_once_and_private(tmp_path):
    token = ensure_token(tmp_path)
    assert stat.S_IMODE((tmp_path / web.TOKEN_FILE).stat().st_mode) == 0o600
    assert ensure_token(tmp_path) == token and len(token) >= 40
    (tmp_path / web.TOKEN_FILE).chmod(0o644)
    with pytest.raises(ChaosError, match="readable by others; chmod 600"):
        ensure_token(tmp_path)


def test_nothing_without_the_token(admin):
    server, token = admin
    for path in ("/", "/metrics", "/api/status.json", "/static/admin.js"):
        assert get(server, path)[0] == 401
    assert get(server, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    assert get(server, "/login?token=wrong")[0] == 403


def test_the_login_sets_a_cookie_that_opens_the_page(admin):
    server, token = admin
    status, headers, _ = get(server, f"/login?token={token}")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert token not in cookie and "HttpOnly" in headers["Set-Cookie"]
    status, _, page = get(server, "/", {"Cookie": cookie})
    assert status == 200
    assert '<tr data-node="node02">' in page and "bad_proof" in page
    assert "cdn" not in page.lower() and 'src="/static/chart.min.js"' in page


def test_metrics_match_the_record(admin):
    server, token = admin
    status, _, text = get(server, "/metrics", {"Authorization": f"Bearer {token}"})
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert samples[("chaos_nodes", (("state", "running"),))] == 1  # node01 (1 job at 22:00)
    assert samples[("chaos_nodes", (("state", "left"),))] == 1  # node03, 21:00 Berlin
    assert samples[("chaos_nodes", (("state", "down"),))] == 1  # node04
    assert samples[("chaos_enrollments", ())] == 2
    assert samples[("chaos_refusals", (("reason", "bad_proof"),))] == 2
    assert samples[("chaos_refusals", (("reason", "wrong_identity"),))] == 1
    assert samples[("chaos_boot_requests", (("answer", "cluster via pxe"),))] == 2
    assert samples[("chaos_slurm_jobs", (("node", "node01"),))] == 1
    assert samples[("chaos_tyd_peers", (("node", "node03"),))] == 1


def test_a_corrupt_record_is_a_clear_503(lab, tmp_path):
    db = tmp_path / "events.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4096)
    token = ensure_token(tmp_path)
    server = open_admin(AdminView(lab, db, lambda: AT), token, "127.0.0.1", 0)
    server.start_background()
    try:
        status, _, text = get(server, "/", {"Authorization": f"Bearer {token}"})
    finally:
        server.stop()
    assert status == 503 and "corrupt" in text and f"mv {db}" in text
