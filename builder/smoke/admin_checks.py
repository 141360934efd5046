"""The admin's view checked inside a smoke lab (scenario `admin:` checks, issue 23).

- status: `chaos-build status --json` on the lab's record lists every member in one of the
  given states (joined once tyd's push arrived; disk after the morning), the rogue's row
  with its refusal, and (after the morning) each member's `left: morning` in the record.
- metrics: /metrics, fetched over the admin listener with the token, parses with
  prometheus_client's text parser; its node counts are status's totals, its enrollments
  and refusals are what serve's own log says it issued and refused.
- page: headless Chromium (Debian's chromium) loads the page through the login; the DOM's
  table is status's table, the charts were drawn; a screenshot is kept in the results.
- unreachable: a guest's TCP connect to the admin port on serve's lab address fails, while
  the same connect to serve's HTTP port works (the positive control).

Nothing here puts the admin token on a command line or in a log: the listener is reached
from inside the lab's namespace by this module's own `fetch` and `redirect` helpers, which
read the token file (`python -m builder.smoke.admin_checks fetch|redirect ...`).
"""

from __future__ import annotations

import argparse
import html.parser
import http.server
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from prometheus_client.parser import text_string_to_metric_families

from builder.admin import events
from builder.model import Cluster
from builder.run import run, spawn
from builder.smoke.scenario import AdminCheck, Scenario
from chaosnode.enrollment import APPROVAL_PATH, FINISH_PATH

CHROMIUM: Final = "/usr/bin/chromium"
REDIRECT_PORT: Final = 9181  # the login redirector beside the admin listener (lab netns)
PAGE_DIR: Final = "admin-page"
# serve's log lines of an enrollment or a push it refused (and recorded), of a certificate
# it issued (builder/enroll/server.py, builder/admin/push.py)
REFUSED_LINE = re.compile(
    r"\benroll \S+ (?!- )\S+ node=\S+ refused (\w+)"
    r"|\bpush \S+ node=\S+ refused (\w+)"
)
ISSUED_LINE = re.compile(
    rf"\benroll \S+ (?:{re.escape(FINISH_PATH)}|{re.escape(APPROVAL_PATH)})"
    r" node=\S+ ok\b"
)


class Lab(Protocol):
    """What the checks need of a running lab (builder.smoke.runner.Smoke)."""

    results: Path
    config: Path
    cluster: Cluster
    members: list[str]
    scenario: Scenario

    @property
    def ns(self) -> str: ...
    def rogue_name(self) -> str: ...
    def exec_on(self, node: str, argv: list[str]) -> tuple[int, str]: ...
    def check(self, title: str, ok: bool, detail: str = "") -> bool: ...
    def watch(self) -> None: ...


def run_all(lab: Lab, when: str) -> None:
    for check in lab.scenario.admin:
        if check.when == when:
            KINDS[check.kind](lab, check)


# -- status ------------------------------------------------------------------------


def status_doc(lab: Lab) -> dict[str, Any]:
    """`chaos-build status --json` as an admin runs it, on the lab's record."""
    r = run(
        [
            sys.executable,
            "-m",
            "builder.cli",
            "status",
            "-c",
            lab.config,
            "--run-dir",
            lab.results / "serve",
            "--json",
        ],
        timeout=60,
        quiet=True,
    )
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def status_problems(
    doc: Mapping[str, Any],
    members: Sequence[str],
    states: Sequence[str],
    rogue: str,
    rogue_pattern: str,
) -> list[str]:
    """What in one status document is not as the check wants it (empty: all is)."""
    rows = {n["node"]: n for n in doc["nodes"]}
    out = [
        f"{m} is {rows[m]['state']} ({rows[m]['reason'] or 'no reason'})"
        for m in members
        if m in rows and rows[m]["state"] not in states
    ]
    out += [f"{m} is not in the table" for m in members if m not in rows]
    if rogue and rogue_pattern:
        row = rows.get(rogue)
        if row is None or not re.search(rogue_pattern, row["reason"] or ""):
            out.append(
                f"the rogue's row ({rogue}) says {row and (row['state'], row['reason'])}"
                f", not /{rogue_pattern}/"
            )
    return out


def left_problems(lab: Lab, why: str) -> list[str]:
    db = events.connect(lab.results / "serve" / events.DB_NAME, readonly=True)
    try:
        evs = events.read(db)
    finally:
        db.close()
    told = {e.node for e in evs if e.kind is events.Kind.LEFT and e.detail == why}
    return [f"{m} never pushed left: {why}" for m in lab.members if m not in told]


def check_status(lab: Lab, check: AdminCheck) -> None:
    rogue = lab.rogue_name()
    deadline = time.monotonic() + check.within
    while True:
        doc = status_doc(lab)
        problems = status_problems(doc, lab.members, check.states, rogue, check.rogue)
        if check.left:
            problems += left_problems(lab, check.left)
        if not problems or time.monotonic() >= deadline:
            break
        lab.watch()
        time.sleep(3)
    totals = ", ".join(f"{v} {k}" for k, v in doc["totals"].items() if v)
    lab.check(
        f"admin: {check.title}",
        not problems,
        "; ".join(problems)
        if problems
        else f"status: {totals}"
        + (
            f"; {rogue}: {next(n['reason'] for n in doc['nodes'] if n['node'] == rogue)}"
            if rogue and check.rogue
            else ""
        ),
    )


# -- metrics -----------------------------------------------------------------------


def admin_url(cluster: Cluster, path: str = "") -> str:
    return f"http://{cluster.serve.admin_address}:{cluster.serve.admin_port}{path}"


def fetch_in_lab(lab: Lab, path: str) -> str:
    r = run(
        [
            "ip",
            "netns",
            "exec",
            lab.ns,
            sys.executable,
            "-m",
            "builder.smoke.admin_checks",
            "fetch",
            lab.results / "serve" / "admin.token",
            admin_url(lab.cluster, path),
        ],
        timeout=60,
        quiet=True,
    )
    return r.stdout.decode()


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus' text format through prometheus_client's own parser."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def serve_log_counts(lab: Lab) -> tuple[int, dict[str, int]]:
    """Certificates issued and refusals by reason, as serve's log says."""
    text = (lab.results / "serve.log").read_text(errors="replace")
    refused: dict[str, int] = {}
    for enroll, push in REFUSED_LINE.findall(text):
        refused[enroll or push] = refused.get(enroll or push, 0) + 1
    return len(ISSUED_LINE.findall(text)), refused


def metrics_problems(
    m: Mapping[str, Mapping[tuple[tuple[str, str], ...], float]],
    totals: Mapping[str, int],
    before: tuple[int, dict[str, int]],
    after: tuple[int, dict[str, int]],
) -> list[str]:
    """/metrics against status's totals and serve's log read before and after the scrape
    (the rogue keeps asking, so a count may grow in between)."""
    out = []
    nodes = {dict(k)["state"]: v for k, v in m.get("chaos_nodes", {}).items()}
    out += [
        f"chaos_nodes{{state={s!r}}} is {nodes.get(s)}, status says {n}"
        for s, n in totals.items()
        if nodes.get(s) != n
    ]
    issued = m.get("chaos_enrollments", {}).get((), -1)
    if not before[0] <= issued <= after[0]:
        out.append(f"chaos_enrollments is {issued}, serve's log says {before[0]}..{after[0]}")
    refusals = {dict(k)["reason"]: v for k, v in m.get("chaos_refusals", {}).items()}
    for reason in sorted(set(refusals) | set(after[1])):
        lo, hi = before[1].get(reason, 0), after[1].get(reason, 0)
        if not lo <= refusals.get(reason, 0) <= hi:
            out.append(
                f"chaos_refusals{{reason={reason!r}}} is {refusals.get(reason, 0)}, "
                f"serve's log says {lo}..{hi}"
            )
    if not m.get("chaos_boot_requests"):
        out.append("no chaos_boot_requests at all")
    return out


def check_metrics(lab: Lab, check: AdminCheck) -> None:
    deadline = time.monotonic() + check.within
    while True:
        totals = status_doc(lab)["totals"]
        before = serve_log_counts(lab)
        try:
            parsed = samples(fetch_in_lab(lab, "/metrics"))
            problems = metrics_problems(parsed, totals, before, serve_log_counts(lab))
        except ValueError as exc:  # the parser's word for text that is not the format
            parsed, problems = {}, [f"/metrics does not parse: {exc}"]
        if not problems or time.monotonic() >= deadline:
            break
        lab.watch()
        time.sleep(3)
    refusals = {dict(k)["reason"]: int(v) for k, v in parsed.get("chaos_refusals", {}).items()}
    lab.check(
        f"admin: {check.title}",
        not problems,
        "; ".join(problems)
        if problems
        else f"{len(parsed)} sample names, enrollments "
        f"{int(parsed.get('chaos_enrollments', {}).get((), 0))}, refusals {refusals}",
    )


# -- the page ----------------------------------------------------------------------


class PageTable(html.parser.HTMLParser):
    """The rows of the page's node table (cell texts by node) and the body's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.node: str | None = None
        self.cell: list[str] | None = None
        self.body: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        node = a.get("data-node")
        if tag == "tr" and node:
            self.node = node
            self.rows[node] = []
        elif tag == "td" and self.node:
            self.cell = []
        elif tag == "body":
            self.body = {k: v or "" for k, v in attrs}

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None and self.node:
            self.rows[self.node].append("".join(self.cell))
            self.cell = None
        elif tag == "tr":
            self.node = None


def page_problems(page: PageTable, doc: Mapping[str, Any]) -> list[str]:
    """The page's table against a status document (the DOM against the database)."""
    out = []
    for n in doc["nodes"]:
        cells = page.rows.get(n["node"])
        if cells is None or len(cells) != 7:
            out.append(f"{n['node']}: no row of 7 cells on the page ({cells})")
            continue
        _, state, _, jobs, peers, address, reason = cells
        want = (
            n["state"],
            str(n["jobs"]),
            str(n["peers"]),
            n["address"] or "-",
            n["reason"] or "-",
        )
        got = (state.split()[0] if state else "", jobs, peers, address, reason)
        if got != want:
            out.append(f"{n['node']}: the page shows {got}, status {want}")
    extra = set(page.rows) - {n["node"] for n in doc["nodes"]}
    out += [f"{name}: on the page, not in status" for name in sorted(extra)]
    if page.body.get("data-charts") != "drawn":
        out.append("the charts were not drawn (Chart.js not loaded?)")
    return out


def chromium(ns: str, profile: Path, *args: str) -> str:
    r = run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--window-size=1300,1400",
            *args,
        ],
        timeout=180,
        quiet=True,
    )
    return r.stdout.decode(errors="replace")


def check_page(lab: Lab, check: AdminCheck) -> None:
    """Chromium opens the redirector's URL (no token on its command line): the redirector
    sends it to /login with the token, the login to the page with the session cookie."""
    evidence = lab.results / PAGE_DIR
    evidence.mkdir(parents=True, exist_ok=True)
    log = evidence / "redirect.log"
    redirector = spawn(
        [
            "ip",
            "netns",
            "exec",
            lab.ns,
            sys.executable,
            "-m",
            "builder.smoke.admin_checks",
            "redirect",
            lab.results / "serve" / "admin.token",
            admin_url(lab.cluster),
            str(REDIRECT_PORT),
        ],
        log_file=log,
    )
    # the profile holds the session cookie: never in the results
    profile = Path(tempfile.mkdtemp(prefix="chaos-chromium-"))
    try:
        wait_for_line(log, "listening", 30, lab.watch)
        url = f"http://127.0.0.1:{REDIRECT_PORT}/"
        deadline = time.monotonic() + check.within
        while True:
            doc = status_doc(lab)
            page = PageTable()
            page.feed(chromium(lab.ns, profile, "--dump-dom", url))
            problems = page_problems(page, doc)
            if not problems or time.monotonic() >= deadline:
                break
            lab.watch()
            time.sleep(3)
        shot = evidence / "page.png"
        chromium(lab.ns, profile, f"--screenshot={shot}", url)
        lab.check(
            f"admin: {check.title}",
            not problems and shot.stat().st_size > 10000,
            "; ".join(problems)
            if problems
            else f"{len(page.rows)} rows as status has them, charts drawn; {shot}",
        )
    finally:
        redirector.terminate()
        redirector.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_line(log: Path, text: str, within: float, watch: Callable[[], None]) -> None:
    deadline = time.monotonic() + within
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{log}: no {text!r} within {within:.0f}s")
        watch()
        time.sleep(0.2)


# -- the admin port from the lab segment ---------------------------------------------


def check_unreachable(lab: Lab, check: AdminCheck) -> None:
    server, serve = str(lab.cluster.serve.address), lab.cluster.serve
    probe = ["python3", "-m", "chaosnode.probe", "connect", server]
    _, admin = lab.exec_on(check.node, [*probe, str(serve.admin_port)])
    _, http = lab.exec_on(check.node, [*probe, str(serve.http_port)])
    ok = "closed" in admin and f"{serve.http_port} open" in http
    lab.check(f"admin: {check.title}", ok, f"{admin.strip()}; control: {http.strip()}")


KINDS: Final[dict[str, Callable[[Lab, AdminCheck], None]]] = {
    "status": check_status,
    "metrics": check_metrics,
    "page": check_page,
    "unreachable": check_unreachable,
}


# -- helpers run inside the lab's namespace --------------------------------------------


def token_of(path: Path) -> str:
    return path.read_text().strip()


def fetch(token_file: Path, url: str) -> bytes:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token_of(token_file)}"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310 - http on lo
        body: bytes = reply.read()
        return body


def redirect(token_file: Path, admin: str, port: int) -> None:
    """Answers every GET with a redirect to the admin listener's login (the token read
    here, so it is on no command line)."""
    target = f"{admin}/login?token={token_of(token_file)}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self.send_response(303)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            print(f"redirected {self.path[:40]}", flush=True)

    server = http.server.HTTPServer(("127.0.0.1", port), Handler)
    print("listening", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m builder.smoke.admin_checks")
    sub = p.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fetch", help="GET a URL of the admin listener with the token")
    f.add_argument("token_file", type=Path)
    f.add_argument("url")
    r = sub.add_parser("redirect", help="send a browser to the login with the token")
    r.add_argument("token_file", type=Path)
    r.add_argument("admin")
    r.add_argument("port", type=int)
    a = p.parse_args(argv)
    if a.what == "fetch":
        sys.stdout.buffer.write(fetch(a.token_file, a.url))
        return 0
    redirect(a.token_file, a.admin, a.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
