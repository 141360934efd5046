#!/usr/bin/env python3
"""The night's cost on the serve host: rewriting every boot answer at an edge, and the
latency of a boot answer (nginx, file cache off, renamed at edges) beside a static file.

    python3 bench/night.py [--nodes 1000] [--requests 2000]   (as root: nginx runs as nobody)

Prints: seconds to switch N nodes' answers (3 files each) to day and to night; the time to
find the next edge; median and p99 of sequential keep-alive GETs on 127.0.0.1 for a boot
answer (mac-*.ipxe, a link or a day file) and for a static file of the same size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import ipaddress
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.render import cluster_yaml  # noqa: E402
from builder.config import load_cluster_text  # noqa: E402
from builder.image.pxe import answer_paths  # noqa: E402
from builder.model import Cluster  # noqa: E402
from builder.nginx import NginxSite, nginx_conf  # noqa: E402
from builder.night import night_of  # noqa: E402
from builder.night.answers import assemble, refresh  # noqa: E402
from builder.run import supervised  # noqa: E402
from builder.serve import served_tree  # noqa: E402

SCHEDULE = (
    'schedule: {windows: ["17:00-09:00"], time_zone: Europe/Berlin, '
    "whole_days: [sat, sun]}\nserve: {address: 10.100.0.1}\n"
)
DAY = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
NIGHT = dt.datetime(2026, 11, 25, 20, tzinfo=dt.UTC)
PORT = 18479


def build_tree(cluster: Cluster, pxe: Path) -> None:
    (pxe / "nodes").mkdir(parents=True)
    (pxe / "vmlinuz").write_bytes(b"k" * 4096)
    (pxe / "static.ipxe").write_text("#!ipxe\n" + "#" * 200 + "\n")
    for node in cluster.nodes:
        for rel in answer_paths(node):
            (pxe / rel).parent.mkdir(parents=True, exist_ok=True)
            (pxe / rel).write_text(f"#!ipxe\n# cluster boot of {node.name}\n" + "#" * 150)


def timed(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def latencies(path: str, n: int) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", PORT)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, (path, r.status)
        out.append(time.perf_counter() - start)
    conn.close()
    out.sort()
    return statistics.median(out) * 1e6, out[int(0.99 * len(out))] * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=2000)
    args = ap.parse_args()
    cluster = load_cluster_text(cluster_yaml(args.nodes) + SCHEDULE)
    night = night_of(cluster)
    assert night is not None
    with served_tree() as work:  # where serve keeps its served tree (/run: a tmpfs)
        pxe, tree, run = work / "pxe", work / "tree", work / "run"
        build_tree(cluster, pxe)
        assemble(tree, pxe, cluster, night, DAY)
        to_night = timed(lambda: refresh(tree, pxe, cluster, night, NIGHT))
        to_day = timed(lambda: refresh(tree, pxe, cluster, night, DAY))
        edge = timed(lambda: night.next_change(NIGHT), repeat=50)
        print(
            f"edge rewrite, {args.nodes} nodes x 3 answers: to night {to_night * 1000:.0f} ms,"
            f" to day {to_day * 1000:.0f} ms; next edge found in {edge * 1e6:.0f} us"
        )
        run.mkdir()
        site = NginxSite(ipaddress.IPv4Address("127.0.0.1"), PORT, tree, run, "nobody", "nogroup")
        (run / "nginx.conf").write_text(nginx_conf(site))
        argv: list[str | Path] = [
            "nginx",
            "-p",
            f"{run}/",
            "-c",
            run / "nginx.conf",
            "-e",
            "stderr",
        ]
        with supervised(argv, log_file=run / "nginx.log"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    latencies("/static.ipxe", 1)
                    break
                except OSError:
                    time.sleep(0.1)
            answer = "/" + answer_paths(cluster.nodes[0])[0]
            for label, path in (
                ("static file (fd cache on)", "/static.ipxe"),
                ("boot answer, day file", answer),
            ):
                med, p99 = latencies(path, args.requests)
                print(f"{label:32} median {med:6.0f} us  p99 {p99:6.0f} us")
            refresh(tree, pxe, cluster, night, NIGHT)
            med, p99 = latencies(answer, args.requests)
            print(f"{'boot answer, night link':32} median {med:6.0f} us  p99 {p99:6.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
