"""The core of a node's view: what every node needs, computed in Python. Each feature adds
its own fields (builder/features/); templates only loop and substitute.

Every list here is sorted and every string final. Nothing reads the clock, the host or the
environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaosnode import ipsec
from chaosnode.contract.node import NodeSettings

from .firewall.model import FirewallModel
from .model import (
    MIGRATION_PORTS,
    Addressing,
    Cluster,
    Node,
    Role,
    Service,
)
from .security.model import SecurityModel
from .tyd.model import TydModel
from .tydconf import HEADER


@dataclass(frozen=True)
class Peer:
    name: str
    fqdn: str
    address: str


@dataclass(frozen=True)
class NodeView:
    """What every node's render context holds; the features add theirs beside it."""

    cluster: str
    name: str
    fqdn: str
    address: str
    prefixlen: int
    mac: str
    dhcp: bool
    gateway: str
    dns: tuple[str, ...]
    hosts: tuple[Peer, ...]  # this node and its known peers; chaosnode.hosts adds the rest
    peers: tuple[Peer, ...]  # known_peers(): the hubs, or everyone on a hub
    node_json: str  # chaosnode.contract.node.NodeSettings: the node's public settings


def fqdn(cluster: Cluster, node: Node) -> str:
    return f"{node.name}.{cluster.cluster.domain}"


def protected_ports(cluster: Cluster) -> tuple[int, ...]:
    """TCP ports that must only ever cross the network inside IPsec."""
    return tuple(sorted({cluster.section(TydModel).tyd.port, *MIGRATION_PORTS}))


def node_services(cluster: Cluster, node: Node) -> tuple[Service, ...]:
    return (*cluster.section(FirewallModel).firewall.services, *node.services)


def ipsec_policy(cluster: Cluster, node: Node) -> ipsec.Policy:
    sec = cluster.section(SecurityModel).security
    return ipsec.Policy(
        address=node.address,
        ike_proposals=sec.ike_proposals,
        esp_proposals=sec.esp_proposals,
        rekey_minutes=sec.rekey_minutes,
        dpd_seconds=ipsec.DPD_SECONDS,
        scope=sec.scope.value,
        protected_ports=protected_ports(cluster),
    )


def all_peers(cluster: Cluster) -> tuple[Peer, ...]:
    return tuple(Peer(n.name, fqdn(cluster, n), str(n.address)) for n in cluster.nodes)


def hubs(cluster: Cluster) -> frozenset[str]:
    """The nodes every node must reach in order to join: the tyd seeds and the Slurm heads."""
    return frozenset(n.name for n in (*cluster.seeds, *cluster.heads))


def known_peers(
    cluster: Cluster, node: Node, everyone: tuple[Peer, ...], hub_names: frozenset[str]
) -> tuple[Peer, ...]:
    """The peers rendered into a node's files (swanctl.conf, the nft set, /etc/hosts).

    A hub knows every node: it must accept IKE from a member it has never heard of (the
    IKE identity is bound to each peer's address, so there is no wildcard responder). Any
    other node knows only the hubs, a constant number; tyd adds every other peer at run
    time through the same connection definition (tyd.ipsec, tyd.nft) once it has verified
    that member's signed record. So a node's overlay does not grow with the cluster, except
    on the few hubs."""
    if node.name in hub_names:
        return tuple(p for p in everyone if p.name != node.name)
    return tuple(p for p in everyone if p.name in hub_names and p.name != node.name)


def hosts(node: Node, everyone: tuple[Peer, ...], peers: tuple[Peer, ...]) -> tuple[Peer, ...]:
    """/etc/hosts: this node and its known peers, in chaos.yaml's order."""
    names = {node.name, *(p.name for p in peers)}
    return tuple(p for p in everyone if p.name in names)


def node_view(
    cluster: Cluster,
    node: Node,
    everyone: tuple[Peer, ...] | None = None,
    hub_names: frozenset[str] | None = None,
) -> NodeView:
    everyone = everyone if everyone is not None else all_peers(cluster)
    hub_names = hub_names if hub_names is not None else hubs(cluster)
    peers = known_peers(cluster, node, everyone, hub_names)
    net = cluster.network
    return NodeView(
        cluster=cluster.cluster.name,
        name=node.name,
        fqdn=fqdn(cluster, node),
        address=str(node.address),
        prefixlen=net.subnet.prefixlen,
        mac=node.mac,
        dhcp=net.addressing is Addressing.DHCP,
        gateway=str(net.gateway) if net.gateway else "",
        dns=tuple(str(d) for d in net.dns),
        hosts=hosts(node, everyone, peers),
        peers=peers,
        node_json=node_settings(cluster, node).dumps(HEADER),
    )


def node_settings(cluster: Cluster, node: Node) -> NodeSettings:
    return NodeSettings(
        name=node.name,
        fqdn=fqdn(cluster, node),
        address=str(node.address),
        mac=node.mac,
        cluster=cluster.cluster.name,
        scope=cluster.section(SecurityModel).security.scope.value,
        enroll_url=enroll_url(cluster),
        push_url=push_url(cluster),
        key_type=cluster.section(SecurityModel).security.key_type.value,
        attestation=node.attestation.value,
    )


def enroll_url(cluster: Cluster) -> str:
    """Where nodes enroll: the serve host's enrollment service (HTTPS, cluster-CA cert)."""
    serve = cluster.serve
    return f"https://{serve.address}:{serve.enroll_port}" if serve.address else ""


def push_url(cluster: Cluster) -> str:
    """Where members push facts about themselves (builder/admin/push.py, mutual TLS)."""
    serve = cluster.serve
    return f"https://{serve.address}:{serve.push_port}" if serve.address else ""


def is_compute(node: Node) -> bool:
    return Role.COMPUTE in node.roles
