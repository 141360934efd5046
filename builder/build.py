"""`chaos-build build`: check, keep the PKI, render, then build the images."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from .model import Cluster
from .pki import ensure_ca, pki_for, revoked_in_roster
from .render import render_cluster
from .slurm.model import SlurmModel


def build(cluster: Cluster, args: argparse.Namespace) -> int:
    def step(name: str, start: float) -> None:
        print(f"[{time.perf_counter() - start:6.2f}s] {name}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    pki = pki_for(cluster, args.config)
    created = ensure_ca(cluster, pki, now)
    step(
        f"pki: cluster CA {'created' if created else 'kept'} in {pki.paths.root} (node "
        "certificates come from enrollment at boot)",
        start,
    )
    for warning in revoked_in_roster(cluster, pki):
        print(f"warning: {warning}", file=sys.stderr)
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
    if line := workload_line(cluster):
        print(line)
    return 0


def workload_line(cluster: Cluster) -> str:
    """Where the admin submits jobs, said once the images are there."""
    workload = cluster.section(SlurmModel).workload
    if not workload.slurm:
        return ""
    head = cluster.heads[0]
    return (
        f"workload: {workload.value}: submit jobs on {head.name} ({head.address}, "
        "the head) with sbatch or srun"
        + (" (MPI: srun --mpi=pmix)" if workload.mpi else "")
        + "; the munge key stays beside the CA (security.pki_dir): back it up"
    )
