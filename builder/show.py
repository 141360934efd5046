"""`chaos-build show NODE`: a node's resolved settings and where each came from."""

from __future__ import annotations

from .loader import Document
from .model import Cluster
from .reference import _plain
from .views import fqdn, node_services, protected_ports


def _origin(doc: Document, *paths: tuple[str | int, ...]) -> str:
    for path in paths:
        if path in doc.lines:
            where = "node" if path and path[0] == "nodes" else "chaos.yaml"
            if path and path[0] == "defaults":
                where = "defaults"
            return f"{where} ({doc.file}:{doc.lines[path]})"
    return "built-in default"


def show_node(cluster: Cluster, doc: Document, name: str) -> str:
    index = next(i for i, n in enumerate(cluster.nodes) if n.name == name)
    node = cluster.nodes[index]
    npath = ("nodes", index)
    rows: list[tuple[str, object, str]] = [
        ("name", node.name, _origin(doc, (*npath, "name"))),
        ("fqdn", fqdn(cluster, node), _origin(doc, ("cluster", "domain"))),
        ("mac", node.mac, _origin(doc, (*npath, "mac"))),
        ("address", f"{node.address}/{cluster.network.subnet.prefixlen}",
         _origin(doc, (*npath, "address"))),
        ("addressing", cluster.network.addressing.value,
         _origin(doc, ("network", "addressing"))),
        ("gateway", cluster.network.gateway, _origin(doc, ("network", "gateway"))),
        ("roles", [r.value for r in node.roles],
         _origin(doc, (*npath, "roles"), ("defaults", "roles"))),
        ("services", [_plain(s) for s in node_services(cluster, node)],
         _origin(doc, (*npath, "services"), ("defaults", "services"),
                 ("firewall", "services"))),
        ("ipsec scope", cluster.security.scope.value, _origin(doc, ("security", "scope"))),
        ("ike proposals", list(cluster.security.ike_proposals),
         _origin(doc, ("security", "ike_proposals"))),
        ("esp proposals", list(cluster.security.esp_proposals),
         _origin(doc, ("security", "esp_proposals"))),
        ("key type", cluster.security.key_type.value, _origin(doc, ("security", "key_type"))),
        ("tyd port", cluster.tyd.port, _origin(doc, ("tyd", "port"))),
        ("tyd seeds", [s.name for s in cluster.seeds], _origin(doc, ("tyd", "seeds"))),
        ("ipsec-only tcp ports", list(protected_ports(cluster)), "derived"),
        ("peers", [n.name for n in cluster.nodes if n.name != name], "derived"),
    ]
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"{k:<{width}}  {v!s:<40}  <- {o}" for k, v, o in rows)
