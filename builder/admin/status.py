"""Every PC's state now or at the end of a night, folded from the event record (pure).

A night is the span from noon of its date to noon of the next day in schedule.time_zone:
it holds the evening's boots and the morning's leaves whatever the windows are.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from zoneinfo import ZoneInfo

from ..model import Cluster
from ..night.model import NightModel
from .events import Event, Kind


class State(enum.Enum):
    DOWN = "down"  # nothing heard tonight
    WOKEN = "woken"  # a Wake-on-LAN packet went out, no boot seen yet
    BOOTED = "booted"  # got the cluster boot answer
    ENROLLED = "enrolled"  # got its certificate
    JOINED = "joined"  # in tyd's map
    RUNNING = "running"  # Slurm runs jobs on it (the head says so)
    LEFT = "left"  # left the cluster (the morning, or tyd)
    DISK = "disk"  # answered the local disk (back to disk, or outside the night)


# states that are the night going as planned; in the others the last reason is shown (for
# `left`, why: the morning, or tyd saw it go)
REACHED = frozenset({State.JOINED, State.RUNNING, State.DISK})
IN_CLUSTER = frozenset({State.BOOTED, State.ENROLLED, State.JOINED, State.RUNNING})


@dataclass(frozen=True)
class NodeStatus:
    node: str
    mac: str
    state: State = State.DOWN
    since: dt.datetime | None = None
    address: str = ""
    jobs: int = 0
    peers: int = 0
    tyd_refusals: int = 0
    reason: str = ""  # the last thing that went wrong since its last boot

    def shown_reason(self) -> str:
        return "" if self.state in REACHED else self.reason


@dataclass(frozen=True)
class Report:
    since: dt.datetime
    until: dt.datetime
    nodes: tuple[NodeStatus, ...]

    def totals(self) -> dict[str, int]:
        counts = Counter(n.state for n in self.nodes)
        return {s.value: counts[s] for s in State}


def night_span(cluster: Cluster, date: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = ZoneInfo(cluster.section(NightModel).schedule.time_zone)
    start = dt.datetime.combine(date, dt.time(12), tz)
    return start, dt.datetime.combine(date + dt.timedelta(days=1), dt.time(12), tz)


def current_night(cluster: Cluster, now: dt.datetime) -> dt.date:
    """The date of the night `now` belongs to (before noon: the night that began yesterday)."""
    local = now.astimezone(ZoneInfo(cluster.section(NightModel).schedule.time_zone))
    return local.date() if local.hour >= 12 else local.date() - dt.timedelta(days=1)


def _moved(s: NodeStatus, state: State, e: Event) -> NodeStatus:
    return replace(s, state=state, since=e.t, address=e.address or s.address)


def step(s: NodeStatus, e: Event) -> NodeStatus:
    """One event applied to one node's status."""
    k = e.kind
    if k is Kind.WAKE:
        return _moved(s, State.WOKEN, e) if s.state in (State.DOWN, State.DISK) else s
    if k is Kind.BOOT:
        if e.detail.startswith("cluster"):
            if s.state in IN_CLUSTER and s.state is not State.BOOTED:
                return s  # a later fetch of the same boot (iPXE after PXE)
            return replace(_moved(s, State.BOOTED, e), jobs=0, peers=0, reason="")
        return _moved(s, State.DISK, e)
    if k is Kind.ENROLLED:
        if s.state in (State.JOINED, State.RUNNING):
            return replace(s, reason="")  # a renewal while it runs: still in tyd's map
        return replace(_moved(s, State.ENROLLED, e), reason="")
    if k is Kind.REFUSED:
        return replace(s, reason=f"enrollment refused: {e.detail}")
    if k is Kind.PENDING:
        return replace(s, reason=f"pending: {e.detail}")
    if k is Kind.JOINED:
        return replace(_moved(s, State.JOINED, e), peers=e.value)
    if k is Kind.JOBS:
        if s.state not in (State.JOINED, State.RUNNING):
            return replace(s, jobs=e.value)
        return replace(_moved(s, State.RUNNING if e.value else State.JOINED, e), jobs=e.value)
    if k is Kind.LEFT:
        return replace(_moved(s, State.LEFT, e), jobs=0, reason=f"left: {e.detail}")
    if k is Kind.TYD_REFUSALS:
        return replace(s, tyd_refusals=e.value)
    if k is Kind.PUSH_REFUSED:
        return replace(s, reason=f"push refused: {e.detail}")
    return s


def fold(
    cluster: Cluster,
    events: Iterable[Event],
    since: dt.datetime,
    until: dt.datetime,
    only: str | None = None,
) -> Report:
    statuses = {
        n.name: NodeStatus(n.name, n.mac) for n in cluster.nodes if only is None or n.name == only
    }
    for e in events:
        if e.node in statuses and since <= e.t < until:
            statuses[e.node] = step(statuses[e.node], e)
    return Report(since, until, tuple(statuses.values()))


# -- output ----------------------------------------------------------------------
COLUMNS = ("node", "state", "since", "jobs", "peers", "address", "reason")


def _since(t: dt.datetime | None, tz: ZoneInfo) -> str:
    return t.astimezone(tz).strftime("%m-%d %H:%M:%S") if t else "-"


def rows(report: Report, tz: ZoneInfo) -> list[tuple[str, ...]]:
    """The table's cells, computed here (the page's template only loops over them)."""
    return [
        (
            n.node,
            n.state.value
            + (f" {n.jobs} job{'s' * (n.jobs != 1)}" if n.state is State.RUNNING else ""),
            _since(n.since, tz),
            str(n.jobs),
            str(n.peers),
            n.address or "-",
            n.shown_reason() or "-",
        )
        for n in report.nodes
    ]


def table(report: Report, tz: ZoneInfo) -> str:
    totals = ", ".join(f"{v} {k}" for k, v in report.totals().items() if v)
    head = (
        f"{len(report.nodes)} PCs, {report.since.astimezone(tz):%Y-%m-%d %H:%M} to "
        f"{report.until.astimezone(tz):%Y-%m-%d %H:%M} {tz.key}: {totals or 'none'}"
    )
    cells = [COLUMNS, *rows(report, tz)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in cells
    ]
    return "\n".join([head, *lines]) + "\n"


def as_json(report: Report) -> str:
    def plain(n: NodeStatus) -> dict[str, object]:
        d = asdict(n)
        d["state"] = n.state.value
        d["since"] = n.since.isoformat() if n.since else None
        d["reason"] = n.shown_reason()
        return d

    return (
        json.dumps(
            {
                "since": report.since.isoformat(),
                "until": report.until.isoformat(),
                "totals": report.totals(),
                "nodes": [plain(n) for n in report.nodes],
            },
            indent=1,
        )
        + "\n"
    )
