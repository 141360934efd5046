"""The node's firewall (overlays/firewall/): nftables.conf, default deny, member traffic only
through IPsec; every feature may add named drop counters (Feature.counters)."""

from __future__ import annotations

from chaosnode.paths import NFT_PEER_SET, NFT_TABLE

from ..firewall.checks import check_services
from ..firewall.model import FirewallModel
from ..model import Cluster, Node, Scope, Service
from ..security.model import SecurityModel
from ..views import NodeView, node_services, protected_ports
from .feature import Counters, Feature, Fields

# Named counters on every drop rule: (name, what it counts).
COUNTERS = (
    ("drop_ike_outsider", "IKE from an address that is not a member"),
    ("drop_esp_outsider", "ESP from an address that is not a member"),
    ("drop_member_plaintext", "member traffic that should have been IPsec but was not"),
    ("drop_invalid", "conntrack-invalid packets"),
    ("drop_input", "everything else (default deny)"),
    ("drop_forward", "forwarded packets (nodes never route)"),
    ("drop_output_plaintext", "our own traffic to members that would leave unprotected"),
)


def service_rule(svc: Service, scope: Scope) -> str:
    if svc.source == "cluster":
        match = f"ip saddr @{NFT_PEER_SET} "
        match += "meta ipsec exists " if scope is Scope.ALL else ""
    elif svc.source == "any":
        match = ""
    else:
        match = f"ip saddr {svc.source} "
    label = svc.name or f"{svc.protocol.value}-{svc.port}"
    return f'{match}{svc.protocol.value} dport {svc.port} accept comment "{label}"'


def fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    scope = cluster.section(SecurityModel).security.scope
    return {
        "scope": scope.value,
        "peer_addresses": ", ".join(p.address for p in core.peers),  # the nft set's elements
        "protected_ports": ", ".join(str(p) for p in protected_ports(cluster)),
        "input_rules": tuple(service_rule(s, scope) for s in node_services(cluster, node)),
        "nft_table": NFT_TABLE,
        "nft_set": NFT_PEER_SET,
        "allow_ping": cluster.section(FirewallModel).firewall.allow_ping,
    }


def counters(cluster: Cluster, node: Node) -> Counters:
    return COUNTERS


def packages(cluster: Cluster) -> tuple[str, ...]:
    return ("nftables",)


FEATURE = Feature(
    name="firewall",
    fields=fields,
    units=("nftables.service",),
    packages=packages,
    counters=counters,
    model=FirewallModel,  # firewall:, after security: in the reference
    model_after="security",
    check=check_services,
)
