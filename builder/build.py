"""`chaos-build build`: check, keep the PKI, render, then build the images."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from .model import Cluster
from .render import render_cluster


def build(cluster: Cluster, args: argparse.Namespace) -> int:
    from .cli import identity, pki_for  # noqa: PLC0415

    def step(name: str, start: float) -> None:
        print(f"[{time.perf_counter() - start:6.2f}s] {name}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    pki = pki_for(cluster, args.config)
    sec = cluster.security
    pki.init_ca(cluster.cluster.name, now, sec.ca_lifetime_days)
    issued = [n.name for n in cluster.nodes
              if pki.issue(identity(cluster, n.name), cluster.cluster.name, now,
                           sec.cert_lifetime_days)]
    step(f"pki: CA ready, {len(issued)} certificate(s) issued", start)
    nodes_dir = args.work / "nodes"
    render_cluster(cluster, pki, nodes_dir)
    step(f"render: {len(cluster.nodes)} node overlays in {nodes_dir}", start)
    if args.render_only:
        return 0
    from .image.build import build_image  # noqa: PLC0415 - heavy; only for images

    summary = build_image(cluster, nodes_dir, args.output, args.cache, args.node)
    step("image: done", start)
    for name, value in sorted(summary.items()):
        print(f"{name}: {value}")
    return 0
