"""night.json: what a node knows of the night, rendered by chaos-build, read by
chaos-morning (chaosnode.morning)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from chaosnode.window import Night, night_from_settings

from .record import JsonRecord


@dataclass(frozen=True)
class NightSettings(JsonRecord):
    node: str
    windows: tuple[str, ...]
    time_zone: str
    whole_days: tuple[str, ...]
    holidays: tuple[str, ...]  # YYYY-MM-DD
    stop_new_work_before: int  # minutes
    morning: str  # reboot or poweroff
    time_source: str  # "" when there is none
    always_on: bool = False  # the always-on head: the night does not apply, it has no morning

    @property
    def enabled(self) -> bool:
        return bool(self.windows or self.whole_days or self.holidays)

    def night(self) -> Night:
        return night_from_settings(
            self.windows,
            self.time_zone,
            self.whole_days,
            tuple(dt.date.fromisoformat(d) for d in self.holidays),
        )
