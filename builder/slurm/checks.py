"""Cross-field checks of the workload (workload:, the heads and compute nodes it needs), the
slurm feature's Feature.check; slurm_port is Slurm's ports, which tyd and services must avoid."""

from __future__ import annotations

from ..checks import Report
from ..loader import Document
from ..model import SLURMCTLD_PORT, SLURMD_PORT, SRUN_PORTS, Cluster, Role, Scope
from ..security.model import SecurityModel
from .model import SlurmModel


def slurm_port(port: int) -> bool:
    return port in (SLURMCTLD_PORT, SLURMD_PORT) or SRUN_PORTS[0] <= port <= SRUN_PORTS[1]


def slurm_ports_text() -> str:
    return f"{SLURMCTLD_PORT}, {SLURMD_PORT}, {SRUN_PORTS[0]}-{SRUN_PORTS[1]}"


def check_workload(cluster: Cluster, doc: Document, report: Report) -> None:
    workload = cluster.section(SlurmModel).workload
    if not workload.slurm:
        return
    if cluster.section(SecurityModel).security.scope is Scope.MIGRATION:
        report(
            ("security", "scope"),
            f"scope migration protects only tyd and the migration "
            f"ports, so Slurm's and MPI's traffic would cross the network in clear; use "
            f"scope all, or workload: none (workload is {workload.value})",
        )
    heads = [i for i, n in enumerate(cluster.nodes) if Role.HEAD in n.roles]
    for i in heads[1:]:
        report(
            ("nodes", i, "roles"),
            f"{cluster.nodes[i].name} is a second head "
            f"(nodes[{heads[0]}] {cluster.nodes[heads[0]].name} is one); workload "
            f"{workload.value} runs one slurmctld: keep role head on one node",
        )
    if not any(Role.COMPUTE in n.roles for n in cluster.nodes):
        report(
            ("nodes",),
            f"no node has role compute, so workload {workload.value} "
            "has nowhere to run jobs; add compute to some node's roles or set workload: none",
        )
