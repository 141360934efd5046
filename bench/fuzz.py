"""Fuzz real daemons on loopback with the Hypothesis strategies of the tests (issue 19).

    python3 bench/fuzz.py --minutes 2 --target tyd    # the venv's python3 (Hypothesis)
    python3 bench/fuzz.py --minutes 1 --target both   # exit status 1 on an internal error

tyd: `python -m tyd` runs as node01 (its own process); an insider holding node02's
certificate and key sends it frames from tests/tyd/wire_strategies.py over mutual TLS, one
frame a connection. enroll: `chaos-build enroll serve` runs as its own process, with a
software EK registered for node01; requests from tests/enroll/request_strategies.py come
from rotating loopback addresses (the per-source rate limit stays on, as in a lab).
Prints frames (requests) per second, refusals by reason as the daemon counted them (the
enrollment service's include the warm-up: it reports totals when it stops),
internal errors (the goal: 0) and the daemon's RSS before and after (after a pause in which
it can give memory back).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# tests/enroll first: its conftest (write_lab_config) is the one imported here
sys.path[:0] = [
    str(ROOT / "tests" / "enroll"),
    str(ROOT / "tests" / "tyd"),
    str(ROOT / "tests"),
    str(ROOT),
]

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BATCH = settings(
    max_examples=200,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
SETTLE_SECONDS = 5  # after the fuzzing, before RSS is read again: time to reclaim memory
WARMUP_SECONDS = 5  # the first requests load code and caches once: not a leak


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def run_batches(
    strategy: st.SearchStrategy[Any], send: Callable[[Any], None], seconds: float
) -> int:
    """Draw from `strategy` and send until the time is up; returns how many were sent."""
    sent = 0
    end = time.monotonic() + seconds

    @BATCH
    @given(item=strategy)
    def batch(item: Any) -> None:
        nonlocal sent
        if time.monotonic() < end:
            send(item)
            sent += 1

    while time.monotonic() < end:
        batch()
    return sent


def report(
    target: str,
    sent: int,
    seconds: float,
    refusals: dict[str, int],
    internal: int,
    rss: tuple[float, float, float],
) -> None:
    start, before, after = rss
    print(f"{target}: {sent} frames in {seconds:.0f} s = {sent / seconds:.0f}/s")
    print(
        f"{target}: refusals by reason: "
        + ", ".join(f"{k} {v}" for k, v in sorted(refusals.items(), key=lambda kv: -kv[1]) if v)
    )
    print(f"{target}: internal errors: {internal}")
    print(
        f"{target}: RSS {start:.1f} MB at start, {before:.1f} MB after a {WARMUP_SECONDS} s "
        f"warm-up, {after:.1f} MB after ({(after - before) / before * 100:+.1f}% from the "
        "warm-up)"
    )


# -- tyd ---------------------------------------------------------------------------------


def fuzz_tyd(seconds: float, work: Path) -> int:
    from helpers import address, make_pki, raw_config
    from wire_strategies import frames, insider_of

    pki = make_pki(work / "pki", 3)
    port = 47000 + os.getpid() % 1000
    run = work / "run"
    cfg = work / "tyd.json"
    cfg.write_text(
        json.dumps(
            raw_config(
                pki,
                1,
                port,
                run,
                heartbeat_seconds=0.5,
                suspect_after_seconds=4.0,
                remove_after_seconds=8.0,
            )
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tyd", "--config", str(cfg)],
        cwd=ROOT,
        stderr=open(work / "tyd.log", "wb"),  # noqa: SIM115
    )
    status = run / "node01" / "status.json"
    try:
        deadline = time.monotonic() + 20
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        rss0 = rss_mb(proc.pid)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=str(pki.paths.ca_cert))
        ctx.load_cert_chain(str(pki.paths.node_cert("node02")), str(pki.paths.node_key("node02")))

        def send(frame: bytes) -> None:
            with (
                socket.create_connection(
                    (address(1), port), timeout=5, source_address=(address(2), 0)
                ) as raw,
                ctx.wrap_socket(raw) as tls,
            ):
                try:
                    tls.sendall(frame)
                    tls.recv(1 << 16)
                except (OSError, ssl.SSLError):
                    pass

        strategy = frames(insider_of(pki))
        run_batches(strategy, send, WARMUP_SECONDS)
        time.sleep(SETTLE_SECONDS)
        before, start = rss_mb(proc.pid), counters(status)
        began = time.monotonic()
        sent = run_batches(strategy, send, seconds)
        took = time.monotonic() - began
        time.sleep(SETTLE_SECONDS)
        after, end = rss_mb(proc.pid), counters(status)
    finally:
        proc.terminate()
        proc.wait(10)
    delta = {k: end.get(k, 0) - start.get(k, 0) for k in end}
    refusals = {
        k: v
        for k, v in delta.items()
        if k in ("malformed", "refused", "out_of_order") or k.startswith("refused_")
    }
    report("tyd", sent, took, refusals, delta.get("internal_errors", 0), (rss0, before, after))
    return delta.get("internal_errors", 0)


def counters(status: Path) -> dict[str, int]:
    for _ in range(10):  # the daemon replaces the file each tick: retry a torn read
        try:
            return dict(json.loads(status.read_text())["counters"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise RuntimeError(f"cannot read {status}")


# -- the enrollment service ----------------------------------------------------------------


def fuzz_enroll(seconds: float, work: Path) -> int:
    from conftest import write_lab_config
    from request_strategies import prepare, requests

    config = write_lab_config(work)
    _, pki, material = prepare(config)
    port = 48000 + os.getpid() % 1000
    log = work / "serve.log"  # a file, not a pipe: a full pipe would stall its logging
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "builder.cli",
            "enroll",
            "serve",
            "-c",
            str(config),
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stderr=open(log, "wb"),  # noqa: SIM115
    )
    try:
        deadline = time.monotonic() + 20
        while "enrollment service on" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        rss0 = rss_mb(proc.pid)
        ctx = ssl.create_default_context(cafile=str(pki.paths.ca_cert))
        ctx.check_hostname = False
        statuses: collections.Counter[int] = collections.Counter()
        turn = [0]

        def send(request: tuple[str, bytes]) -> None:
            path, body = request
            turn[0] += 1  # 250 sources at 2 requests/s each: the rate limit rarely bites
            source = f"127.0.{1 + turn[0] // 250 % 4}.{2 + turn[0] % 250}"
            conn = http.client.HTTPSConnection(
                "127.0.0.1", port, context=ctx, timeout=10, source_address=(source, 0)
            )
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                statuses[resp.status] += 1
            except (OSError, http.client.HTTPException):
                statuses[0] += 1
            finally:
                conn.close()

        strategy = requests(material)
        run_batches(strategy, send, WARMUP_SECONDS)  # counted by the service: see report
        time.sleep(SETTLE_SECONDS)
        before = rss_mb(proc.pid)
        began = time.monotonic()
        sent = run_batches(strategy, send, seconds)
        took = time.monotonic() - began
        time.sleep(SETTLE_SECONDS)
        after = rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    err = log.read_text(errors="replace")
    found = re.search(r"enrollment service stopped; requests: (.*)", err)
    # a handler thread still logging may glue its line to the end of this one
    served = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found.group(1))} if found else {}
    refusals = {
        k.removeprefix("refused_"): v
        for k, v in served.items()
        if k.startswith("refused_") or k in ("deadline", "busy", "busy_source")
    }
    report("enroll", sent, took, refusals, served.get("internal_errors", -1), (rss0, before, after))
    print(
        f"enroll: HTTP statuses seen by the fuzzer: {dict(sorted(statuses.items()))}; "
        f"{err.count('Traceback')} tracebacks in the service's log"
    )
    notable = [
        line
        for line in err.splitlines()
        if "internal error" in line
        or "too many" in line
        or "holds " in line
        and "connections" in line
    ]
    for line in notable[:5]:
        print(f"enroll: service log: {line[:300]}")
    if "Traceback" in err:  # the first one, for whoever fixes it
        at = err.index("Traceback")
        print(err[err.rfind("\n", 0, at - 2) + 1 : at + 3000].rsplit("\nenroll ", 1)[0])
    return served.get("internal_errors", 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--target", choices=("tyd", "enroll", "both"), default="both")
    args = p.parse_args()
    seconds = args.minutes * 60
    internal = 0
    with tempfile.TemporaryDirectory(prefix="chaos-fuzz-") as tmp:
        if args.target in ("tyd", "both"):
            (Path(tmp) / "tyd").mkdir()
            internal += fuzz_tyd(seconds, Path(tmp) / "tyd")
        if args.target in ("enroll", "both"):
            (Path(tmp) / "enroll").mkdir()
            internal += fuzz_enroll(seconds, Path(tmp) / "enroll")
    return 1 if internal else 0


if __name__ == "__main__":
    sys.exit(main())
