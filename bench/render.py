#!/usr/bin/env python3
"""Render benchmark: generated clusters of 10, 100, 500 and 2000 nodes (one seed, one head).

Prints seconds, total bytes and bytes per node of the rendered overlays, the largest and the
typical (median) node, and what the shared ISO's bundle of every overlay (builder.image.nodes)
costs per node as packed (newc cpio) and zstd-compressed. Goal (issue 22): bytes per node
within 10% from 10 to 2000 nodes, 2000 nodes under 20 s.

    python3 bench/render.py [--sizes 10,100,500,2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.config import load_cluster_text  # noqa: E402
from builder.image import cpio  # noqa: E402
from builder.image.nodes import BUNDLE_COMPRESSOR  # noqa: E402
from builder.pki import Pki, issue_all  # noqa: E402
from builder.render import render_cluster  # noqa: E402


def cluster_yaml(n: int) -> str:
    net = ipaddress.IPv4Network("10.100.0.0/16")
    lines = [
        "cluster: {name: bench}",
        f"network: {{subnet: {net}, gateway: 10.100.0.1}}",
        "workload: slurm",
        "nodes:",
    ]
    for i in range(n):
        addr = net.network_address + 10 + i
        mac = f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        roles = ", roles: [head]" if i == 1 else ""
        lines.append(f'  - {{name: n{i:04d}, mac: "{mac}", address: {addr}{roles}}}')
    return "\n".join(lines) + "\n"


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def bundle_sizes(nodes_dir: Path) -> tuple[int, int]:
    """The shared ISO's bundle of every node tree: packed, and compressed as the build does."""
    entries: dict[str, cpio.Entry] = {}
    for tree in sorted(nodes_dir.iterdir()):
        entries.update(cpio.tree_entries(tree, 0, f"usr/lib/chaos/nodes/{tree.name}"))
    packed = cpio.archive(entries, 0)
    if shutil.which("zstd") is None:
        return len(packed), 0
    zst = subprocess.run(BUNDLE_COMPRESSOR, input=packed, capture_output=True, check=True).stdout
    return len(packed), len(zst)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,500,2000")
    args = ap.parse_args()
    now = dt.datetime.now(dt.UTC)
    print(
        f"{'nodes':>6} {'render s':>9} {'total B':>11} {'B/node':>8} {'max node B':>11} "
        f"{'median B':>9} {'bundle B/node':>14} {'zstd B/node':>12}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        tmp = Path(tempfile.mkdtemp(prefix="chaos-bench-"))
        try:
            cluster = load_cluster_text(cluster_yaml(n), "bench.yaml")
            pki = Pki(tmp / "pki")
            issue_all(cluster, pki, now)
            t0 = time.perf_counter()
            render_cluster(cluster, pki, tmp / "nodes")
            seconds = time.perf_counter() - t0
            per = [tree_bytes(d) for d in (tmp / "nodes").iterdir()]
            total = sum(per)
            packed, zst = bundle_sizes(tmp / "nodes")
            print(
                f"{n:>6} {seconds:>9.2f} {total:>11} {total / n:>8.0f} {max(per):>11} "
                f"{statistics.median(per):>9.0f} {packed / n:>14.0f} {zst / n:>12.0f}",
                flush=True,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
