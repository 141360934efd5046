"""Cross-field checks: things no single field can know (duplicates, subnets, references).

The core model's checks are here; a feature's own settings are checked by its Feature.check
(builder/night/checks.py, builder/head/checks.py), which cross_check asks FEATURES for."""

from __future__ import annotations

import difflib

from . import features
from .checks import Report, duplicates
from .errors import Problem
from .loader import Document, Path_, dotted
from .model import (
    IKE_PORTS,
    MIGRATION_PORTS,
    SLURMCTLD_PORT,
    SLURMD_PORT,
    SRUN_PORTS,
    Cluster,
    Protocol,
    Role,
    Scope,
    Service,
)


def cross_check(cluster: Cluster, doc: Document) -> list[Problem]:
    problems: list[Problem] = []

    def report(path: Path_, message: str) -> None:
        problems.append(Problem(doc.file, doc.line(path), dotted(path), message))

    _check_network(cluster, report)
    _check_nodes(cluster, report)
    _check_tyd(cluster, report)
    _check_services(cluster, report)
    _check_serve(cluster, report)
    _check_workload(cluster, report)
    features.check(cluster, doc, report)  # each feature's own (Feature.check)
    return problems


def _check_network(cluster: Cluster, report: Report) -> None:
    net = cluster.network
    if net.subnet.num_addresses < 4:
        report(("network", "subnet"), f"{net.subnet} is too small for a cluster; use /29 or larger")
    if net.gateway is not None and net.gateway not in net.subnet:
        report(("network", "gateway"), f"{net.gateway} is outside network.subnet {net.subnet}")


def _check_nodes(cluster: Cluster, report: Report) -> None:
    net = cluster.network
    if not cluster.nodes:
        report(("nodes",), "no nodes: list at least one machine with name, mac and address")
    reserved = {
        net.subnet.network_address: "the subnet's network address",
        net.subnet.broadcast_address: "the subnet's broadcast address",
    }
    if net.gateway is not None:
        reserved[net.gateway] = "network.gateway"
    for i, node in enumerate(cluster.nodes):
        if node.address not in net.subnet:
            report(
                ("nodes", i, "address"), f"{node.address} is outside network.subnet {net.subnet}"
            )
        elif node.address in reserved:
            report(
                ("nodes", i, "address"),
                f"{node.address} is {reserved[node.address]}; pick a free host address",
            )
    for attr, what in (("name", "name"), ("mac", "MAC"), ("address", "address")):
        duplicates(
            ((i, getattr(n, attr)) for i, n in enumerate(cluster.nodes)),
            lambda i, first, value, attr=attr, what=what: report(  # type: ignore[misc]
                ("nodes", i, attr),
                f"{what} {value} is already used by "
                f"nodes[{first}] ({cluster.nodes[first].name}); each node needs its "
                f"own {what}",
            ),
        )


def _check_tyd(cluster: Cluster, report: Report) -> None:
    tyd = cluster.tyd
    names = [n.name for n in cluster.nodes]
    for i, seed in enumerate(tyd.seeds):
        if seed not in names:
            close = difflib.get_close_matches(seed, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "name a node from nodes:"
            report(("tyd", "seeds", i), f"unknown node {seed!r}; {hint}")
    if cluster.workload.slurm and slurm_port(tyd.port):
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


def _check_services(cluster: Cluster, report: Report) -> None:
    lists: list[tuple[Path_, tuple[Service, ...]]] = [
        (("firewall", "services"), cluster.firewall.services),
        (("defaults", "services"), cluster.defaults.services),
    ]
    lists += [(("nodes", i, "services"), n.services) for i, n in enumerate(cluster.nodes)]
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
            elif svc.protocol is Protocol.TCP and svc.port == cluster.tyd.port:
                report(
                    path,
                    f"tcp {svc.port} is tyd.port; tyd is always allowed through "
                    "IPsec; remove this service or move tyd.port",
                )
            elif svc.protocol is Protocol.TCP and cluster.workload.slurm and slurm_port(svc.port):
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


def _check_serve(cluster: Cluster, report: Report) -> None:
    serve, net = cluster.serve, cluster.network
    if serve.enroll_port == serve.http_port:
        report(
            ("serve", "enroll_port"),
            f"{serve.enroll_port} is serve.http_port too; pick another port",
        )
    _check_admin(cluster, report)  # admin: builder/admin (push and admin listeners)
    if serve.address is None:
        return
    if serve.address not in net.subnet:
        report(("serve", "address"), f"{serve.address} is outside network.subnet {net.subnet}")
    elif serve.address in (net.subnet.network_address, net.subnet.broadcast_address):
        report(("serve", "address"), f"{serve.address} is not a host address of {net.subnet}")
    else:
        for i, node in enumerate(cluster.nodes):
            if node.address == serve.address:
                report(
                    ("serve", "address"),
                    f"{serve.address} is nodes[{i}] ({node.name}); "
                    "use the build host's own address",
                )


def _check_admin(cluster: Cluster, report: Report) -> None:
    serve, net = cluster.serve, cluster.network
    if serve.push_port in (serve.http_port, serve.enroll_port):
        report(
            ("serve", "push_port"),
            f"{serve.push_port} is serve.http_port or serve.enroll_port too; pick another port",
        )
    if serve.admin_address in net.subnet:
        report(
            ("serve", "admin_address"),
            f"{serve.admin_address} is inside network.subnet "
            f"{net.subnet}: the lab would reach the admin page; use 127.0.0.1 or an "
            "address of the staff network",
        )


def slurm_port(port: int) -> bool:
    return port in (SLURMCTLD_PORT, SLURMD_PORT) or SRUN_PORTS[0] <= port <= SRUN_PORTS[1]


def slurm_ports_text() -> str:
    return f"{SLURMCTLD_PORT}, {SLURMD_PORT}, {SRUN_PORTS[0]}-{SRUN_PORTS[1]}"


def _check_workload(cluster: Cluster, report: Report) -> None:
    if not cluster.workload.slurm:
        return
    if cluster.security.scope is Scope.MIGRATION:
        report(
            ("security", "scope"),
            f"scope migration protects only tyd and the migration "
            f"ports, so Slurm's and MPI's traffic would cross the network in clear; use "
            f"scope all, or workload: none (workload is {cluster.workload.value})",
        )
    heads = [i for i, n in enumerate(cluster.nodes) if Role.HEAD in n.roles]
    for i in heads[1:]:
        report(
            ("nodes", i, "roles"),
            f"{cluster.nodes[i].name} is a second head "
            f"(nodes[{heads[0]}] {cluster.nodes[heads[0]].name} is one); workload "
            f"{cluster.workload.value} runs one slurmctld: keep role head on one node",
        )
    if not any(Role.COMPUTE in n.roles for n in cluster.nodes):
        report(
            ("nodes",),
            f"no node has role compute, so workload {cluster.workload.value} "
            "has nowhere to run jobs; add compute to some node's roles or set workload: none",
        )
