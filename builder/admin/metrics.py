"""/metrics: tonight's figures from the event record, in Prometheus' text format
(prometheus_client). Gauges, not counters: each value is counted over the current night
from the record, so a restart of serve does not reset them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .events import Event, Kind
from .night import NightView
from .status import Report


def families(
    report: Report, view: NightView, events: Sequence[Event], dropped: int
) -> list[Metric]:
    nodes = GaugeMetricFamily("chaos_nodes", "PCs by state tonight", labels=["state"])
    for state, count in report.totals().items():
        nodes.add_metric([state], count)
    enrolled = GaugeMetricFamily("chaos_enrollments", "certificates issued tonight")
    enrolled.add_metric([], view.enrolled)
    refusals = GaugeMetricFamily(
        "chaos_refusals", "enrollments and pushes refused tonight", labels=["reason"]
    )
    for reason, count in view.refusals:
        refusals.add_metric([reason], count)
    boots = GaugeMetricFamily(
        "chaos_boot_requests", "boot answers given tonight", labels=["answer"]
    )
    for answer, count in view.boot_requests:
        boots.add_metric([answer], count)
    peers = GaugeMetricFamily(
        "chaos_tyd_peers", "members each node's tyd sees (last push)", labels=["node"]
    )
    tyd_ref = GaugeMetricFamily(
        "chaos_tyd_refusals", "tyd's refusal counter (last push)", labels=["node"]
    )
    jobs = GaugeMetricFamily(
        "chaos_slurm_jobs", "Slurm jobs running per node (the head's last push)", labels=["node"]
    )
    for n in report.nodes:
        peers.add_metric([n.node], n.peers)
        tyd_ref.add_metric([n.node], n.tyd_refusals)
        jobs.add_metric([n.node], n.jobs)
    waking = GaugeMetricFamily("chaos_wake_sent", "Wake-on-LAN packets sent tonight")
    waking.add_metric([], Counter(e.kind for e in events)[Kind.WAKE])
    lost = GaugeMetricFamily(
        "chaos_events_dropped",
        "events not recorded since serve started (queue full or the record broken)",
    )
    lost.add_metric([], dropped)
    return [nodes, enrolled, refusals, boots, peers, tyd_ref, jobs, waking, lost]


class _Snapshot(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


def exposition(metrics: list[Metric]) -> bytes:
    """The text format of these families (one registry per scrape: nothing global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics))
    return generate_latest(registry)
