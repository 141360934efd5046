"""`chaos-build status [--night DATE] [NODE] [--json]`: every PC's state from the record."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from ..errors import ChaosError
from ..model import Cluster
from ..night.model import NightModel
from . import events
from .status import as_json, current_night, fold, night_span, table


def status(
    cluster: Cluster,
    db_path: Path,
    now: dt.datetime,
    night: dt.date | None = None,
    node: str | None = None,
    json_out: bool = False,
) -> str:
    """The table (or JSON) for the night of `night` at its end, or for tonight up to now."""
    if node is not None and node not in {n.name for n in cluster.nodes}:
        raise ChaosError(f"no node named {node!r} in chaos.yaml")
    since, until = night_span(cluster, night if night else current_night(cluster, now))
    until = min(until, now) if night is None else until
    db = events.connect(db_path, readonly=True)
    try:
        report = fold(cluster, events.read(db, since, until, node), since, until, node)
    finally:
        db.close()
    return (
        as_json(report)
        if json_out
        else table(report, ZoneInfo(cluster.section(NightModel).schedule.time_zone))
    )


def night_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ChaosError(
            f"--night {text!r} is not a date; use YYYY-MM-DD (the evening the night began)"
        ) from None
