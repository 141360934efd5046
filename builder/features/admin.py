"""The admin's view, node side (overlays/admin/): members push facts about themselves to
serve's event record (chaosnode/pushwatch.py, pushjobs.py; the serve side is builder/admin/).
node.json's push_url says where; the units do nothing on a node without it."""

from __future__ import annotations

from ..model import Cluster, Node
from ..views import NodeView
from .feature import Feature, Fields


def fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    return {}


FEATURE = Feature(
    name="admin", fields=fields, units=("chaos-pushwatch.service", "chaos-pushjobs.timer")
)
