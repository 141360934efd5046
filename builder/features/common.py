"""What every node needs: its name, address, network, /etc/hosts and node.json (overlays/common/,
with the units every node runs). Its fields are the core NodeView itself (builder/views.py)."""

from __future__ import annotations

from ..model import Cluster
from .feature import Feature


def packages(cluster: Cluster) -> tuple[str, ...]:
    return ("linux-image-amd64", "systemd", "systemd-sysv", "udev", "kmod", "iproute2", "python3")


FEATURE = Feature(
    name="common",
    units=(
        "systemd-networkd.service",
        "chaos-identity.service",
        "chaos-selftest.service",
        "chaos-hosts.service",
    ),
    packages=packages,
)
