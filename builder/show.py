"""`chaos-build show NODE`: a node's resolved settings and where each came from.

The rows come from the model's declarations (every node field, then every cluster-wide
setting a node gets), so a setting added to builder/model.py shows up here by itself;
only the derived rows at the end are listed by hand.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from .features import top_level
from .loader import Document, Path_
from .model import Cluster, Node, NodeDefaults
from .night import night_of
from .night.answers import answer_for
from .reference import plain
from .views import fqdn, node_services, protected_ports

# sections whose settings a node does not carry (the node's own fields come from `nodes`)
NOT_PER_NODE = ("defaults", "nodes")
# node fields that `defaults` can set
DEFAULTED = frozenset(f.name for f in dataclasses.fields(NodeDefaults))


def _origin(doc: Document, *paths: Path_) -> str:
    for path in paths:
        if path in doc.lines:
            where = "node" if path and path[0] == "nodes" else "chaos.yaml"
            if path and path[0] == "defaults":
                where = "defaults"
            return f"{where} ({doc.file}:{doc.lines[path]})"
    return "built-in default"


def node_rows(cluster: Cluster, doc: Document, index: int) -> list[tuple[str, Any, str]]:
    node = cluster.nodes[index]
    npath: Path_ = ("nodes", index)
    rows = []
    for f in dataclasses.fields(Node):
        value = getattr(node, f.name)
        if f.name == "address":
            value = f"{value}/{cluster.network.subnet.prefixlen}"
        elif f.name == "services":
            value = [plain(s) for s in node_services(cluster, node)]
        inherited = [("defaults", f.name)] if f.name in DEFAULTED else []
        extra = [("firewall", "services")] if f.name == "services" else []
        rows.append((f.name, plain(value), _origin(doc, (*npath, f.name), *inherited, *extra)))
    return rows


def cluster_rows(cluster: Cluster, doc: Document) -> list[tuple[str, Any, str]]:
    rows = []
    for section in top_level():  # the core model's keys and every feature's
        if section.name in NOT_PER_NODE:
            continue
        value = section.value(cluster)
        if not dataclasses.is_dataclass(value):  # a top-level scalar such as workload
            rows.append((section.name, plain(value), _origin(doc, (section.name,))))
            continue
        for f in dataclasses.fields(value):
            if section.name == "firewall" and f.name == "services":
                continue  # merged into the node's services row
            rows.append(
                (
                    f"{section.name}.{f.name}",
                    plain(getattr(value, f.name)),
                    _origin(doc, (section.name, f.name)),
                )
            )
    return rows


def show_mac(cluster: Cluster, mac: str, now: dt.datetime) -> str:
    """What serve answers this MAC at `now`, and when that changes."""
    return answer_for(cluster, night_of(cluster), mac, now).describe()


def show_node(cluster: Cluster, doc: Document, name: str, now: dt.datetime | None = None) -> str:
    index = next(i for i, n in enumerate(cluster.nodes) if n.name == name)
    node = cluster.nodes[index]
    rows = [
        *node_rows(cluster, doc, index),
        ("fqdn", fqdn(cluster, node), _origin(doc, ("cluster", "domain"))),
        *cluster_rows(cluster, doc),
        ("tyd seed nodes", [s.name for s in cluster.seeds], "derived"),
        ("head (slurmctld)", [h.name for h in cluster.heads], "derived"),
        ("ipsec-only tcp ports", list(protected_ports(cluster)), "derived"),
        ("peers", [n.name for n in cluster.nodes if n.name != name], "derived"),
    ]
    if now is not None:
        rows.append(
            ("boot answer", show_mac(cluster, node.mac, now), f"schedule at {now:%F %T %Z}")
        )
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"{k:<{width}}  {v!s:<40}  <- {o}" for k, v, o in rows)
