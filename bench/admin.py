#!/usr/bin/env python3
"""The event record at lab scale: N nodes x D nights of events (a night as it goes: wake,
PXE and iPXE answers, enrollment, join, hourly Slurm pushes, tyd's counter, the morning's
leave, the disk; one PC in 50 refused and pending), written through serve's writer.

    python3 bench/admin.py [--nodes 500] [--nights 30]

Prints: events and events/s recorded (the writer thread, queue and batches serve uses), the
database's size on disk, `chaos-build status` for one night, the admin page (render, and
one GET over loopback through the token) and /metrics for the last night.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.night import timed  # noqa: E402
from bench.render import cluster_yaml  # noqa: E402
from builder.admin import events  # noqa: E402
from builder.admin.cli import status  # noqa: E402
from builder.admin.events import Event, EventLog, Kind  # noqa: E402
from builder.admin.web import AdminView, ensure_token, open_admin, render_page  # noqa: E402
from builder.config import load_cluster_text  # noqa: E402
from builder.model import Cluster  # noqa: E402

SCHEDULE = (
    'schedule: {windows: ["17:00-09:00"], time_zone: Europe/Berlin}\nserve: {address: 10.100.0.1}\n'
)
FIRST = dt.date(2026, 11, 1)


def night(cluster: Cluster, date: dt.date) -> list[Event]:
    start = dt.datetime.combine(date, dt.time(16), dt.UTC)  # 17:00 in Berlin
    out = []
    for i, n in enumerate(cluster.nodes):
        t = start + dt.timedelta(seconds=i * 0.2)
        a = str(n.address)

        def at(
            s: float, kind: Kind, detail: str = "", value: int = 0, t: dt.datetime = t, n=n, a=a
        ) -> Event:  # type: ignore[no-untyped-def]
            return Event(t + dt.timedelta(seconds=s), kind, n.name, n.mac, a, detail, value)

        out += [
            at(0, Kind.WAKE, "br0"),
            at(40, Kind.BOOT, "cluster via pxe"),
            at(45, Kind.BOOT, "cluster via http"),
        ]
        if i % 50 == 7:
            out += [
                at(80, Kind.REFUSED, "unregistered: not registered"),
                at(80, Kind.PENDING, "unregistered"),
            ]
            continue
        out += [
            at(80, Kind.ENROLLED),
            at(95, Kind.JOINED, "tyd", 40),
            at(200, Kind.TYD_REFUSALS, "unknown certificate", i % 3),
        ]
        out += [at(3600 * h, Kind.JOBS, "from n0000", (i + h) % 5) for h in range(1, 15)]
        out += [
            at(16 * 3600 - 300, Kind.LEFT, "morning"),
            at(16 * 3600 + 30, Kind.BOOT, "disk via pxe"),
        ]
    return sorted(out, key=lambda e: e.t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--nights", type=int, default=30)
    args = ap.parse_args()
    cluster = load_cluster_text(cluster_yaml(args.nodes) + SCHEDULE, "bench.yaml")
    with tempfile.TemporaryDirectory(prefix="chaos-bench-admin-") as tmp:
        run_dir = Path(tmp)
        db = run_dir / events.DB_NAME
        log = EventLog(db, say=print, queue_max=events.QUEUE_MAX).start()
        count, spent = 0, 0.0
        for d in range(args.nights):
            evs = night(cluster, FIRST + dt.timedelta(days=d))
            start = time.perf_counter()
            for e in evs:
                while log.backlog >= events.QUEUE_MAX:  # the bench waits; serve would drop
                    time.sleep(0.001)
                log.record(e)
            log.flush()
            spent += time.perf_counter() - start
            count += len(evs)
        log.stop()
        assert log.dropped == 0 and log.written == count
        size = sum(p.stat().st_size for p in run_dir.glob(events.DB_NAME + "*"))
        print(
            f"{args.nodes} nodes x {args.nights} nights: {count} events recorded in "
            f"{spent:.1f} s: {count / spent:,.0f} events/s"
        )
        print(f"database on disk: {size / 2**20:.1f} MiB ({size / count:.0f} bytes/event)")
        last = FIRST + dt.timedelta(days=args.nights - 1)
        later = dt.datetime.combine(last + dt.timedelta(days=5), dt.time(), dt.UTC)
        print(
            f"status --night {last}: {timed(lambda: status(cluster, db, later, last)):.3f} s"
            f" (median of 5)"
        )
        at = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(6), dt.UTC)
        view = AdminView(cluster, db, lambda: at)
        print(
            f"page render: {timed(lambda: render_page(view.page())):.3f} s; "
            f"/metrics: {timed(view.metrics):.3f} s"
        )
        token = ensure_token(run_dir)
        server = open_admin(view, token, "127.0.0.1", 0)
        server.start_background()

        def get() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
            conn.request("GET", "/", headers={"Authorization": f"Bearer {token}"})
            body = conn.getresponse().read()
            assert len(body) > args.nodes * 50
            conn.close()

        try:
            print(f"page load over loopback (GET /, {args.nodes} rows): {timed(get):.3f} s")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
