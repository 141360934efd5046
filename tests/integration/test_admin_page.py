"""serve's admin page in a real browser and its listener on the wire (root, namespaces).

Headless Chromium (Debian's `chromium`) runs in a namespace of its own with nothing but
loopback, beside the admin listener: it cannot reach any other network. It loads the page
through the token login; the DOM's table must be the record's status, the charts must have
been drawn from the locally served Chart.js, and a screenshot is kept under
results/admin-page/. A lab-segment namespace must not reach the admin listener, while it
does reach a port serve offers on the segment (the negative check means something).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from admintest import HERE, night_events, write_db
from chaostest import ROOT
from netlab import lab, need_root_tools, run, wait_for
from test_serve import (
    cluster_with_pki,
    lab_namespace,
    need_root_and_tools,
    pxe_tree,
    schedule_text,
    start_serve,
    stop_serve,
    wait_for_http,
)

from builder.admin.cli import status
from builder.config import load_cluster
from builder.smoke.admin_checks import CHROMIUM, PageTable, chromium, page_problems

pytestmark = pytest.mark.integration
RESULTS = ROOT / "results" / "admin-page"
AT = "2026-12-01T22:00:00+00:00"  # the trouble night, 23:00 in Berlin
# the admin listener as serve opens it (serve.admin_address:admin_port from the lab file)
SERVER = """
import datetime as dt, sys, threading
from pathlib import Path
from builder.admin.web import AdminView, ensure_token, open_admin
from builder.config import load_cluster
cluster = load_cluster(Path(sys.argv[1]))[0]
at = dt.datetime.fromisoformat(sys.argv[3])
run_dir = Path(sys.argv[2])
view = AdminView(cluster, run_dir / "events.sqlite", lambda: at)
server = open_admin(view, ensure_token(run_dir), str(cluster.serve.admin_address),
                    cluster.serve.admin_port)
print("listening", flush=True)
server.serve_forever()
"""


@pytest.fixture
def admin_ns(tmp_path) -> Iterator[tuple[str, Path]]:
    """A namespace with loopback only, the admin listener running in it on the record of the
    trouble night."""
    need_root_tools(CHROMIUM)
    ns = f"chaos-admin{tmp_path.name[-6:]}"
    run("ip", "netns", "add", ns)
    run("ip", "-n", ns, "link", "set", "lo", "up")
    write_db(tmp_path / "events.sqlite", night_events("trouble"))
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-c",
            SERVER,
            str(HERE / "lab.yaml"),
            str(tmp_path),
            AT,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield ns, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        run("ip", "netns", "del", ns, check=False)


def test_the_page_in_a_browser_shows_the_record(admin_ns):
    ns, run_dir = admin_ns
    token = (run_dir / "admin.token").read_text().strip()
    cluster = load_cluster(HERE / "lab.yaml")[0]
    url = f"http://127.0.0.1:{cluster.serve.admin_port}/login?token={token}"
    dom = chromium(ns, run_dir / "profile", "--dump-dom", url)
    page = PageTable()
    page.feed(dom)
    record = json.loads(
        status(cluster, run_dir / "events.sqlite", dt.datetime.fromisoformat(AT), json_out=True)
    )
    assert page_problems(page, record) == []  # the DOM's table against the database
    assert set(page.rows) == {n.name for n in cluster.nodes}
    assert page.rows["node02"][-1].startswith("enrollment refused: bad_proof")
    broken = PageTable()
    broken.feed(dom.replace("bad_proof", "bad_prooof").replace('data-charts="drawn"', ""))
    assert len(page_problems(broken, record)) == 2, "the comparison can fail"
    RESULTS.mkdir(parents=True, exist_ok=True)
    shot = RESULTS / "page.png"
    shot.unlink(missing_ok=True)
    chromium(ns, run_dir / "profile", f"--screenshot={shot}", url)
    assert shot.stat().st_size > 10000


def test_the_admin_listener_is_not_reachable_from_the_lab_segment(tmp_path):
    need_root_tools()
    cluster = load_cluster(HERE / "lab.yaml")[0]
    write_db(tmp_path / "events.sqlite", night_events("trouble"))
    with lab("adm") as net:
        serve = net.add("serve", "10.99.0.1")
        node = net.add("node02", "10.99.0.12")
        admin = net.spawn(
            serve,
            [sys.executable, "-c", SERVER, str(HERE / "lab.yaml"), str(tmp_path), AT],
            {"PYTHONPATH": str(ROOT)},
            tmp_path / "admin.log",
        )
        segment = net.spawn(
            serve,
            [sys.executable, "-m", "http.server", "--bind", "10.99.0.1", "8080"],
            {},
            tmp_path / "http.log",
        )
        port = cluster.serve.admin_port
        wait_for(lambda: serve.tcp_connect("127.0.0.1", port), 20, "the admin listener")
        wait_for(lambda: node.tcp_connect("10.99.0.1", 8080), 20, "serve's segment port")
        assert admin.poll() is None and segment.poll() is None
        assert not node.tcp_connect("10.99.0.1", port), "the lab reaches the admin page"
        assert not node.tcp_connect("127.0.0.1", port)
        listening = serve.sh("ss", "-Htln", f"sport = :{port}").stdout
        assert "127.0.0.1:" in listening and "10.99.0.1:" not in listening, listening


def test_chromium_is_installed_for_this_test():
    assert shutil.which("chromium") or Path(CHROMIUM).exists()


# a PC's DHCP DISCOVER and REQUEST for node01's MAC, broadcast on its side of the segment
DHCP_CLIENT = """
import socket, struct
mac = bytes.fromhex("525400990011")
def packet(kind, *options):
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128sI", 1, 1, 6, 0, 0x1234, 0, 0x8000,
                       bytes(4), bytes(4), bytes(4), bytes(4), mac, b"", b"", 0x63825363)
    return head + bytes([53, 1, kind]) + b"".join(options) + bytes([255])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"cli0")
s.bind(("0.0.0.0", 68))
s.sendto(packet(1), ("255.255.255.255", 67))
s.sendto(packet(3, bytes([50, 4, 10, 99, 0, 11]), bytes([54, 4, 10, 99, 0, 1])),
         ("255.255.255.255", 67))
"""

PUSH_CLIENT = """
import sys
import tempfile
from pathlib import Path
from chaosnode.push import MemberPush, send
pki = Path(sys.argv[1])
send("10.99.0.1", 8444, MemberPush("node02", "joined", peers=2), pki / "nodes/node02.pem",
     pki / "nodes/node02.key", pki / "ca.pem")
"""


def test_serve_records_what_it_sees(tmp_path):
    """The real serve (dnsmasq, nginx, enrollment, pushes, the admin listener) in a
    namespace: a DHCP answer, an iPXE answer fetched over HTTP, a refused enrollment and a
    member's push
    land in the record; `status` and /metrics (over the admin listener) show them."""
    need_root_and_tools()
    cluster = cluster_with_pki(tmp_path)
    with (tmp_path / "chaos.yaml").open("a") as f:
        f.write(schedule_text(True))
    run(
        sys.executable,
        "-m",
        "builder.cli",
        "pki",
        "issue",
        "node02",
        "-c",
        str(tmp_path / "chaos.yaml"),
    )
    public = Path(tempfile.mkdtemp(prefix="chaos-pxe-"))  # nginx's workers must read it
    public.chmod(0o755)
    pxe = public / "pxe"
    pxe_tree(cluster, pxe)
    node = cluster.nodes[0]
    with lab_namespace() as ns, contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, public, ignore_errors=True)
        proc = start_serve(ns, tmp_path, pxe)
        try:
            wait_for_http(ns, proc)
            curl = ["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "5"]
            run(*curl, f"http://10.99.0.1:8080/mac-{node.mac.replace(':', '-')}.ipxe")
            pc = f"{ns}-pc"  # the PC's side of the segment, a namespace of its own
            run("ip", "netns", "add", pc)
            cleanup.callback(run, "ip", "netns", "del", pc, check=False)
            run("ip", "-n", ns, "link", "set", "cli0", "netns", pc)
            run("ip", "-n", pc, "link", "set", "cli0", "up")
            run("ip", "netns", "exec", pc, sys.executable, "-c", DHCP_CLIENT)
            r = run(
                *curl,
                "-k",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "-H",
                "Content-Length: 2",
                "-d",
                "{}",
                "https://10.99.0.1:8443/enroll/start",
            )
            assert r.stdout == "400", r.stdout
            run(
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-c",
                PUSH_CLIENT,
                str(tmp_path / "pki"),
                timeout=30,
            )
            token = (tmp_path / "run" / "admin.token").read_text().strip()
            text = wait_for(
                lambda: (
                    lambda t: (
                        t
                        if 'answer="cluster via dhcpack"' in t and 'answer="cluster via http"' in t
                        else ""
                    )
                )(
                    run(
                        *curl,
                        "-H",
                        f"Authorization: Bearer {token}",
                        "http://127.0.0.1:9180/metrics",
                    ).stdout
                ),
                20,
                "the boot in /metrics",
            )
            stop_serve(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert 'chaos_refusals{reason="malformed"} 1.0' in text
    assert 'chaos_tyd_peers{node="node02"} 2.0' in text
    report = json.loads(
        status(cluster, tmp_path / "run" / "events.sqlite", dt.datetime.now(dt.UTC), json_out=True)
    )
    states = {n["node"]: n["state"] for n in report["nodes"]}
    assert states["node01"] == "booted" and states["node02"] == "joined", states
