"""slurm.json: what Slurm this node runs, rendered by chaos-build, read by chaos-slurm."""

from __future__ import annotations

from dataclasses import dataclass

from .record import JsonRecord


@dataclass(frozen=True)
class SlurmSettings(JsonRecord):
    workload: str  # slurm or slurm+mpi
    node: str
    head: str
    head_address: str
    slurmctld: bool  # this node is the head
    slurmd: bool  # this node runs jobs
    tyd_map: str  # tyd's JSON export: Slurm's node list follows it
    munge_key: str  # where enrollment put the cluster's munge key (tmpfs)
