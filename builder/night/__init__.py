"""The night window on the build host: boot answers by the clock (answers.py), Wake-on-LAN
(wake.py). The window itself is chaosnode/window.py, shared with the nodes."""

from __future__ import annotations

from chaosnode.window import Night, night_from_settings

from ..model import Cluster


def night_of(cluster: Cluster) -> Night | None:
    """The cluster's night, or None when no schedule is set (the cluster boots at any hour)."""
    sched = cluster.schedule
    if not sched.enabled:
        return None
    return night_from_settings(sched.windows, sched.time_zone,
                               tuple(d.value for d in sched.whole_days), sched.holidays)
