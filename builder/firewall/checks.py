"""Cross-field checks of the services the firewall opens (firewall.services, defaults.services,
nodes[].services), the firewall feature's Feature.check."""

from __future__ import annotations

from ..checks import Report
from ..loader import Document, Path_
from ..model import IKE_PORTS, Cluster, Protocol, Service
from ..slurm.checks import slurm_port, slurm_ports_text
from ..slurm.model import SlurmModel
from ..tyd.model import TydModel
from .model import FirewallModel


def check_services(cluster: Cluster, doc: Document, report: Report) -> None:
    """Every service list: firewall.services, defaults.services and each node's."""
    lists: list[tuple[Path_, tuple[Service, ...]]] = [
        (("firewall", "services"), cluster.section(FirewallModel).firewall.services),
        (("defaults", "services"), cluster.defaults.services),
    ]
    lists += [(("nodes", i, "services"), n.services) for i, n in enumerate(cluster.nodes)]
    tyd_port = cluster.section(TydModel).tyd.port
    slurm = cluster.section(SlurmModel).workload.slurm
    for base, services in lists:
        seen: dict[tuple[int, Protocol], int] = {}
        for j, svc in enumerate(services):
            path = (*base, j, "port")
            if svc.protocol is Protocol.UDP and svc.port in IKE_PORTS:
                report(
                    path,
                    f"udp {svc.port} is IKE, which the firewall already handles; "
                    "remove this service",
                )
            elif svc.protocol is Protocol.TCP and svc.port == tyd_port:
                report(
                    path,
                    f"tcp {svc.port} is tyd.port; tyd is always allowed through "
                    "IPsec; remove this service or move tyd.port",
                )
            elif svc.protocol is Protocol.TCP and slurm and slurm_port(svc.port):
                report(
                    path,
                    f"tcp {svc.port} is a Slurm port ({slurm_ports_text()}), open "
                    "to members through IPsec already; remove this service",
                )
            key = (svc.port, svc.protocol)
            if key in seen:
                report(
                    path,
                    f"{svc.protocol.value} {svc.port} is already listed at "
                    f"index {seen[key]}; keep one",
                )
            seen.setdefault(key, j)
