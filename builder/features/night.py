"""The night (overlays/night/): night.json for chaos-morning, the clock from
schedule.time_source; its model section and checks are builder/night/model.py and checks.py,
serve's side is builder/night/, the window chaosnode/window.py."""

from __future__ import annotations

from chaosnode.contract.night import NightSettings

from ..model import Cluster, Node
from ..night.checks import check_schedule
from ..night.model import NightModel
from ..tydconf import HEADER
from ..views import NodeView
from .feature import Feature, Fields


def time_source(cluster: Cluster) -> str:
    """Where nodes set their clock: schedule.time_source, else the serve host."""
    source = cluster.section(NightModel).schedule.time_source or cluster.serve.address
    return str(source) if source else ""


def night_settings(cluster: Cluster, node: Node) -> NightSettings:
    sched = cluster.section(NightModel).schedule
    return NightSettings(
        node=node.name,
        windows=sched.windows,
        time_zone=sched.time_zone,
        whole_days=tuple(d.value for d in sched.whole_days),
        holidays=tuple(d.isoformat() for d in sched.holidays),
        stop_new_work_before=sched.stop_new_work_before,
        morning=sched.morning.value,
        time_source=time_source(cluster),
        always_on=node.always_on,
    )


def fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    return {
        "night_json": night_settings(cluster, node).dumps(HEADER),
        "time_source": time_source(cluster),  # "" when there is none
    }


def packages(cluster: Cluster) -> tuple[str, ...]:
    # the window's time zone rules, and the clock from schedule.time_source
    return ("tzdata", "systemd-timesyncd")


FEATURE = Feature(
    name="night",
    fields=fields,
    units=("chaos-morning.service",),
    packages=packages,
    model=NightModel,  # schedule:, after serve: in the reference
    model_after="serve",
    check=check_schedule,
)
