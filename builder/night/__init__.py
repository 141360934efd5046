"""The night window on the build host: boot answers by the clock (answers.py), Wake-on-LAN
(wake.py). The window itself is chaosnode/window.py, shared with the nodes."""

from __future__ import annotations

import datetime as dt

from chaosnode.window import Night, night_from_settings

from ..model import Cluster
from ..security.model import SecurityModel
from .model import NightModel


def night_of(cluster: Cluster) -> Night | None:
    """The cluster's night, or None when no schedule is set (the cluster boots at any hour)."""
    sched = cluster.section(NightModel).schedule
    if not sched.enabled:
        return None
    return night_from_settings(
        sched.windows, sched.time_zone, tuple(d.value for d in sched.whole_days), sched.holidays
    )


# a node certificate outlives the night by this much: the morning's LEAVE and reboot happen
# with a valid certificate even when the node's clock is a little off
CERT_MARGIN = dt.timedelta(hours=1)


def cert_hours(cluster: Cluster, now: dt.datetime) -> float:
    """How long a certificate issued at `now` is valid: until the end of the night plus
    CERT_MARGIN when a schedule is set and `now` is inside the night, never longer than
    security.node_cert_hours (the bound for a long weekend, and the lifetime without a
    schedule or outside the night)."""
    bound = float(cluster.section(SecurityModel).security.node_cert_hours)
    night = night_of(cluster)
    if night is None or not night.inside(now):
        return bound
    end = night.next_change(now)
    if end is None:
        return bound
    return min(bound, (end - now + CERT_MARGIN).total_seconds() / 3600)
