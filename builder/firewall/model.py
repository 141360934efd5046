"""The firewall's model section: chaos.yaml's `firewall:` (the cluster-wide services, ping),
declared once here and named by the firewall feature (builder/features/firewall.py). A node's
own services are the core Node's. Its checks: builder/firewall/checks.py."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Service
from ..settings import setting


@dataclass(frozen=True, kw_only=True)
class FirewallSection:
    services: tuple[Service, ...] = setting(
        (),
        "extra services to allow in",
        example=[{"name": "ssh", "port": 22, "protocol": "tcp", "source": "cluster"}],
    )
    allow_ping: bool = setting(True, "answer ICMP echo from cluster members")


@dataclass(frozen=True, kw_only=True)
class FirewallModel:
    """The firewall's top-level chaos.yaml keys."""

    firewall: FirewallSection = setting(FirewallSection(), "the nftables firewall")
