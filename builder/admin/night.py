"""What the page and /metrics show of one night, computed here from the record (pure):
the timeline, boot-to-join times, refusals by reason, boot requests."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ..model import Cluster
from .events import Event, Kind
from .status import NodeStatus, State, step

STEP = dt.timedelta(minutes=10)
UP = frozenset({State.JOINED, State.RUNNING})
# boot-to-join histogram: upper bounds in seconds (the last bin is "longer")
JOIN_BINS = (30, 60, 120, 300, 600, 1800)


@dataclass(frozen=True)
class Timeline:
    labels: tuple[str, ...]  # the end of each STEP, local HH:MM
    members: tuple[int, ...]  # members up (joined or running) then
    jobs: tuple[int, ...]  # Slurm jobs running then


@dataclass(frozen=True)
class NightView:
    timeline: Timeline
    join_bins: tuple[str, ...]
    join_counts: tuple[int, ...]
    refusals: tuple[tuple[str, int], ...]  # (reason code, count), most first
    boot_requests: tuple[tuple[str, int], ...]  # (answer via, count)
    enrolled: int


def timeline(
    cluster: Cluster, events: Sequence[Event], since: dt.datetime, until: dt.datetime, tz: dt.tzinfo
) -> Timeline:
    statuses = {n.name: NodeStatus(n.name, n.mac) for n in cluster.nodes}
    labels, members, jobs = [], [], []
    i, edge = 0, since + STEP
    while edge <= until + STEP and since < until:
        while i < len(events) and events[i].t < min(edge, until):
            e = events[i]
            if e.node in statuses and e.t >= since:
                statuses[e.node] = step(statuses[e.node], e)
            i += 1
        labels.append(min(edge, until).astimezone(tz).strftime("%H:%M"))
        members.append(sum(s.state in UP for s in statuses.values()))
        jobs.append(sum(s.jobs for s in statuses.values() if s.state in UP))
        if edge >= until:
            break
        edge += STEP
    return Timeline(tuple(labels), tuple(members), tuple(jobs))


def boot_to_join(events: Sequence[Event]) -> list[float]:
    """Seconds from each node's cluster boot answer to its next join, per boot."""
    booted: dict[str, dt.datetime] = {}
    out = []
    for e in events:
        if e.kind is Kind.BOOT and e.detail.startswith("cluster") and e.node not in booted:
            booted[e.node] = e.t
        elif e.kind is Kind.JOINED and e.node in booted:
            out.append((e.t - booted.pop(e.node)).total_seconds())
    return out


def histogram(seconds: Sequence[float]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    labels = [f"<{b}s" if b < 60 else f"<{b // 60}min" for b in JOIN_BINS] + [
        f">={JOIN_BINS[-1] // 60}min"
    ]
    counts = [0] * len(labels)
    for s in seconds:
        counts[next((i for i, b in enumerate(JOIN_BINS) if s < b), len(JOIN_BINS))] += 1
    return tuple(labels), tuple(counts)


def refusal_reasons(events: Sequence[Event]) -> tuple[tuple[str, int], ...]:
    c = Counter(
        e.detail.split(":")[0] for e in events if e.kind in (Kind.REFUSED, Kind.PUSH_REFUSED)
    )
    return tuple(c.most_common())


def boot_requests(events: Sequence[Event]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(Counter(e.detail for e in events if e.kind is Kind.BOOT).items()))


def night_view(
    cluster: Cluster, events: Sequence[Event], since: dt.datetime, until: dt.datetime, tz: dt.tzinfo
) -> NightView:
    bins, counts = histogram(boot_to_join(events))
    return NightView(
        timeline(cluster, events, since, until, tz),
        bins,
        counts,
        refusal_reasons(events),
        boot_requests(events),
        sum(e.kind is Kind.ENROLLED for e in events),
    )
