"""Cross-field checks of tyd's model section (tyd:), the tyd feature's Feature.check."""

from __future__ import annotations

import difflib

from ..checks import Report
from ..loader import Document
from ..model import IKE_PORTS, MIGRATION_PORTS, Cluster
from ..slurm.checks import slurm_port, slurm_ports_text
from ..slurm.model import SlurmModel
from .model import TydModel


def check_tyd(cluster: Cluster, doc: Document, report: Report) -> None:
    tyd = cluster.section(TydModel).tyd
    names = [n.name for n in cluster.nodes]
    for i, seed in enumerate(tyd.seeds):
        if seed not in names:
            close = difflib.get_close_matches(seed, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "name a node from nodes:"
            report(("tyd", "seeds", i), f"unknown node {seed!r}; {hint}")
    if cluster.section(SlurmModel).workload.slurm and slurm_port(tyd.port):
        report(
            ("tyd", "port"), f"{tyd.port} is a Slurm port ({slurm_ports_text()}); pick another port"
        )
    elif tyd.port in IKE_PORTS or tyd.port in MIGRATION_PORTS:
        report(
            ("tyd", "port"),
            f"{tyd.port} clashes with IKE (500/4500) or the migration "
            "ports (12820/13333); pick another port",
        )
    if not tyd.heartbeat_seconds < tyd.suspect_after_seconds < tyd.remove_after_seconds:
        report(
            ("tyd", "suspect_after_seconds"),
            f"need heartbeat_seconds ({tyd.heartbeat_seconds}) < suspect_after_seconds "
            f"({tyd.suspect_after_seconds}) < remove_after_seconds "
            f"({tyd.remove_after_seconds})",
        )
