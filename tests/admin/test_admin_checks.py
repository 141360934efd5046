"""The smoke lab's admin checks (builder/smoke/admin_checks.py) without a lab: their
scenario data is validated with file:line errors, and each comparison is run on a recorded
night through the real code (status, /metrics from prometheus_client, the page's table),
so that each can pass and each can fail. The token helpers run against a real admin
listener on loopback."""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import json
import threading
import urllib.request
from pathlib import Path

import pytest
from admintest import night_events, write_db

from builder.admin.cli import status
from builder.admin.web import AdminView, ensure_token, open_admin, render_page
from builder.errors import ConfigError
from builder.smoke import admin_checks
from builder.smoke.admin_checks import (
    PageTable,
    metrics_problems,
    page_problems,
    samples,
    status_problems,
)
from builder.smoke.scenario import load_scenario

AT = dt.datetime.fromisoformat("2026-12-01T22:00:00+00:00")  # the trouble night, 23:00
GOOD = """\
description: two members
boot: [node01, node02]
night: {ends_after: 600}
admin:
  - {title: s, kind: status, states: [joined, running], rogue: "unregistered", within: 60}
  - {title: d, kind: status, when: morning, states: [disk], left: morning}
  - {title: u, kind: unreachable, node: node02}
"""


def scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s" / "scenario.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_admin_checks_are_read_from_the_scenario(tmp_path):
    s = load_scenario(scenario(tmp_path, GOOD))
    assert [(a.kind, a.when, a.states, a.left, a.node) for a in s.admin] == [
        ("status", "formed", ("joined", "running"), "", ""),
        ("status", "morning", ("disk",), "morning", ""),
        ("unreachable", "formed", ("joined",), "", "node02"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("kind: status, states", "kind: stats, states", ":5: admin[0].kind: 'stats': use one of"),
        ("when: morning", "when: noon", ":6: admin[1].when: 'noon': use formed or morning"),
        ("[disk]", "[home]", ":6: admin[1].states[0]: 'home' is no state"),
        ("node: node02}", "node: node07}", ":7: admin[2].node: 'node07' is not booted"),
        ("kind: unreachable, node: node02", "kind: unreachable", ":7: admin[2]: missing 'node'"),
        ('"unregistered"', '"unregistered("', ":5: admin[0].rogue: not a regular expression"),
        ("within: 60}", "within: 9000}", ":5: admin[0].within: 9000.0 is outside 0..900"),
        ("night: {ends_after: 600}\n", "", ":5: admin[1].when: a check after the morning needs"),
        (
            "kind: status, states",
            "kind: status, colour: red, states",
            ":5: admin[0].colour: unknown key",
        ),
    ],
)
def test_bad_admin_checks_are_refused_with_file_line_and_field(tmp_path, old, new, message):
    path = scenario(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as exc:
        load_scenario(path)
    assert f"{path}{message}" in str(exc.value)


def test_the_shipped_labs_carry_the_admin_checks():
    from chaostest import ROOT

    iso = load_scenario(ROOT / "tests/scenarios/iso/scenario.yaml")
    assert {a.kind for a in iso.admin} == {"status", "metrics", "page", "unreachable"}
    night = load_scenario(ROOT / "tests/scenarios/night/scenario.yaml")
    morning = [a for a in night.admin if a.when == "morning"]
    assert morning and morning[0].states == ("disk",) and morning[0].left == "morning"


# -- the comparisons on the trouble night --------------------------------------------------


@pytest.fixture
def night(tmp_path, lab):
    db = write_db(tmp_path / "events.sqlite", night_events("trouble"))
    return json.loads(status(lab, db, AT, json_out=True)), AdminView(lab, db, lambda: AT)


def test_status_problems_name_the_member_that_did_not_get_there(night):
    doc, _ = night
    states = {n["node"]: n["state"] for n in doc["nodes"]}
    good = [m for m, s in states.items() if s in ("joined", "running")]
    assert good and status_problems(doc, good, ("joined", "running"), "", "") == []
    bad = [m for m, s in states.items() if s not in ("joined", "running")]
    problems = status_problems(doc, good + bad, ("joined", "running"), "", "")
    assert len(problems) == len(bad) and all(" is " in p for p in problems)
    assert status_problems(doc, ["node09"], ("joined",), "", "") == ["node09 is not in the table"]


def test_the_rogues_row_must_show_its_refusal(night):
    doc, _ = night
    assert status_problems(doc, [], ("joined",), "node02", "bad_proof") == []
    (problem,) = status_problems(doc, [], ("joined",), "node02", "unregistered")
    assert "the rogue's row (node02)" in problem and "/unregistered/" in problem


def test_metrics_parse_and_match_status_and_serves_log(night):
    doc, view = night
    m = samples(view.metrics().decode())
    refusals = {dict(k)["reason"]: int(v) for k, v in m["chaos_refusals"].items()}
    issued = int(m["chaos_enrollments"][()])
    log = (issued, refusals)
    assert metrics_problems(m, doc["totals"], log, log) == []
    assert (
        metrics_problems(
            m, doc["totals"], (0, {}), (issued + 5, {r: n + 1 for r, n in refusals.items()})
        )
        == []
    ), "a count between two reads is fine"
    totals = {**doc["totals"], "joined": doc["totals"]["joined"] + 1}
    wrong = metrics_problems(m, totals, (issued + 1, refusals), (issued + 1, {}))
    assert any(p.startswith("chaos_nodes{state='joined'}") for p in wrong)
    assert any(p.startswith("chaos_enrollments is") for p in wrong)
    assert any(p.startswith("chaos_refusals{reason=") for p in wrong)
    with pytest.raises(ValueError):
        samples("chaos_nodes{state=joined} one\n")


def test_serves_log_is_counted_as_the_record_counts(tmp_path):
    class Lab:
        results = tmp_path

    (tmp_path / "serve.log").write_text(
        "enroll 10.99.0.14 /enroll/start node=node04 refused unregistered: not registered\n"
        "enroll 10.99.0.11 /enroll/finish node=node01 ok\n"
        "enroll 10.99.0.12 /enroll/start node=node02 ok\n"
        "enroll 10.99.0.9 - node=- refused malformed: HTTP 400\n"  # no event: not counted
        "enroll 10.99.0.9 POST /x node=- refused method\n"
        "push 10.99.0.13 node=node03 refused wrong_identity: node03 may push\n"
    )
    assert admin_checks.serve_log_counts(Lab()) == (  # type: ignore[arg-type]
        1,
        {"unregistered": 1, "wrong_identity": 1},
    )


def test_the_page_against_status(night, lab):
    doc, view = night
    page = PageTable()
    page.feed(render_page(view.page()).replace("<body", '<body data-charts="drawn"'))
    assert page_problems(page, doc) == []
    lie = PageTable()
    lie.feed(render_page(view.page()).replace("bad_proof", "bad_prooof", 1))
    problems = page_problems(lie, doc)
    assert len(problems) == 2 and "the charts were not drawn" in problems[1]


# -- the helpers that run in the lab's namespace, here on loopback ----------------------------


@pytest.fixture
def listener(tmp_path, lab):
    db = write_db(tmp_path / "events.sqlite", night_events("trouble"))
    server = open_admin(AdminView(lab, db, lambda: AT), ensure_token(tmp_path), "127.0.0.1", 0)
    server.start_background()
    yield server, tmp_path / "admin.token"
    server.stop()


def test_fetch_sends_the_token_from_its_file(listener):
    server, token = listener
    text = admin_checks.fetch(token, f"{server.url}/metrics").decode()
    assert "chaos_nodes" in samples(text)
    token.write_text("not-the-token\n")
    with pytest.raises(urllib.error.HTTPError) as err:
        admin_checks.fetch(token, f"{server.url}/metrics")
    assert err.value.code == 401


def test_the_redirector_logs_a_browser_in_without_the_token_on_its_url(listener, capsys):
    server, token = listener
    probe = __import__("socket").socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    threading.Thread(
        target=admin_checks.redirect, args=(token, server.url, port), daemon=True
    ).start()
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    for _ in range(50):
        try:
            page = opener.open(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            break
        except OSError:
            __import__("time").sleep(0.1)
    table = PageTable()
    table.feed(page)
    assert set(table.rows) == {"node01", "node02", "node03", "node04"}
    assert token.read_text().strip() not in capsys.readouterr().out


def test_a_renewal_while_joined_keeps_the_node_joined(lab):
    """Found by the default lab: node02 renewed its certificate (chaos-renew) and showed
    `enrolled` until the end, as tyd never joined again."""
    from builder.admin.events import Event, Kind
    from builder.admin.status import State, fold

    t = dt.datetime(2026, 12, 1, 18, tzinfo=dt.UTC)
    evs = [
        Event(t, Kind.ENROLLED, "node02"),
        Event(t, Kind.JOINED, "node02", value=2),
        Event(t + dt.timedelta(hours=5), Kind.ENROLLED, "node02"),
    ]
    (n,) = fold(lab, evs, t - dt.timedelta(hours=1), t + dt.timedelta(hours=6), "node02").nodes
    assert n.state is State.JOINED
