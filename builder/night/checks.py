"""Cross-field checks of the night's model section (schedule:), the night feature's
Feature.check."""

from __future__ import annotations

import difflib
import zoneinfo

from chaosnode.window import DAY, Window, overlapping, parse_window

from ..checks import Report, duplicates
from ..loader import Document
from ..model import Cluster
from .model import NightModel


def check_schedule(cluster: Cluster, doc: Document, report: Report) -> None:
    sched = cluster.section(NightModel).schedule
    windows: list[tuple[int, Window]] = []
    for i, text in enumerate(sched.windows):
        try:
            windows.append((i, parse_window(text)))
        except ValueError as exc:
            report(("schedule", "windows", i), str(exc))
    for n, (i, a) in enumerate(windows):
        for j, b in windows[:n]:
            if overlapping(a, b):
                report(
                    ("schedule", "windows", i),
                    f"{a} overlaps windows[{j}] ({b}); merge them into one window",
                )
    try:
        zoneinfo.ZoneInfo(sched.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(
            sched.time_zone, sorted(zoneinfo.available_timezones()), n=1
        )
        hint = f"did you mean {close[0]!r}?" if close else "use a name such as Europe/Berlin"
        report(("schedule", "time_zone"), f"unknown time zone {sched.time_zone!r}; {hint}")
    duplicates(
        enumerate(sched.holidays),
        lambda i, first, value: report(
            ("schedule", "holidays", i), f"{value} is already listed at index {first}; keep one"
        ),
    )
    duplicates(
        ((i, d.value) for i, d in enumerate(sched.whole_days)),
        lambda i, first, value: report(
            ("schedule", "whole_days", i), f"{value} is already listed at index {first}; keep one"
        ),
    )
    shortest = min((((w.end - w.start) % DAY) for _, w in windows), default=None)
    if shortest is not None and sched.stop_new_work_before >= shortest:
        report(
            ("schedule", "stop_new_work_before"),
            f"{sched.stop_new_work_before} minutes is "
            f"not shorter than the shortest window ({shortest} minutes): nodes would take no "
            "work at all; lower it",
        )
    if sched.enabled and sched.time_source is None and cluster.serve.address is None:
        report(
            ("schedule", "time_source"),
            "nodes need a clock source to know when the night "
            "ends: set schedule.time_source or serve.address",
        )
