"""Cross-field checks: things no single field can know (duplicates, subnets, references).

The core model's checks are here; a feature's own settings are checked by its Feature.check
(builder/<feature>/checks.py: the night's, the head's, tyd's, the firewall's, the
workload's), which cross_check asks FEATURES for."""

from __future__ import annotations

from . import features
from .checks import Report, duplicates
from .errors import Problem
from .loader import Document, Path_, dotted
from .model import Cluster


def cross_check(cluster: Cluster, doc: Document) -> list[Problem]:
    problems: list[Problem] = []

    def report(path: Path_, message: str) -> None:
        problems.append(Problem(doc.file, doc.line(path), dotted(path), message))

    _check_network(cluster, report)
    _check_nodes(cluster, report)
    _check_serve(cluster, report)
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
