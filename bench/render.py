#!/usr/bin/env python3
"""Render benchmark: 10, 100 and 1000 generated nodes; seconds per run and per node.

    python3 bench/render.py [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.config import load_cluster_text  # noqa: E402
from builder.pki import Pki, issue_all  # noqa: E402
from builder.render import render_cluster  # noqa: E402


def cluster_yaml(n: int) -> str:
    net = ipaddress.IPv4Network("10.100.0.0/16")
    lines = ["cluster: {name: bench}", f"network: {{subnet: {net}, gateway: 10.100.0.1}}",
             "nodes:"]
    for i in range(n):
        addr = net.network_address + 10 + i
        mac = f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        lines.append(f'  - {{name: n{i:04d}, mac: "{mac}", address: {addr}}}')
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    args = ap.parse_args()
    now = dt.datetime.now(dt.UTC)
    print(f"{'nodes':>6} {'parse s':>8} {'pki s':>8} {'render s':>9} {'ms/node':>8} {'MB':>7}")
    for n in (int(s) for s in args.sizes.split(",")):
        tmp = Path(tempfile.mkdtemp(prefix="chaos-bench-"))
        try:
            t0 = time.perf_counter()
            cluster = load_cluster_text(cluster_yaml(n), "bench.yaml")
            t1 = time.perf_counter()
            pki = Pki(tmp / "pki")
            issue_all(cluster, pki, now)
            t2 = time.perf_counter()
            render_cluster(cluster, pki, tmp / "nodes")
            t3 = time.perf_counter()
            size = sum(p.stat().st_size for p in (tmp / "nodes").rglob("*") if p.is_file())
            print(f"{n:>6} {t1 - t0:>8.2f} {t2 - t1:>8.2f} {t3 - t2:>9.2f} "
                  f"{(t3 - t2) / n * 1000:>8.2f} {size / 1e6:>7.1f}", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
