"""tyd, the discovery daemon (overlays/tyd/): its tyd.json and unit; its model section and
checks are builder/tyd/model.py and checks.py, the daemon is tyd/."""

from __future__ import annotations

from ..model import Cluster, Node
from ..tyd.checks import check_tyd
from ..tyd.model import TydModel
from ..tydconf import tyd_config_json
from ..views import NodeView, ipsec_policy
from .feature import Feature, Fields


def fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    peers = tuple(p.address for p in core.peers)
    return {"tyd_json": tyd_config_json(cluster, node, peers, ipsec_policy(cluster, node))}


FEATURE = Feature(
    name="tyd",
    fields=fields,
    units=("tyd.service",),
    model=TydModel,  # tyd:, after firewall: in the reference
    model_after="firewall",
    check=check_tyd,
)
