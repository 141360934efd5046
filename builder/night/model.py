"""The night's model section: chaos.yaml's `schedule:` (the night window, the morning, the
clock), declared once here and named by the night feature (builder/features/night.py), which
the loader, the reference and `show` ask. Its checks: builder/night/checks.py."""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from dataclasses import dataclass

from ..settings import setting


class Weekday(enum.Enum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


class Morning(enum.Enum):
    REBOOT = "reboot"
    POWEROFF = "poweroff"


@dataclass(frozen=True, kw_only=True)
class ScheduleSection:
    windows: tuple[str, ...] = setting(
        (),
        "the night: daily windows HH:MM-HH:MM in time_zone (a start after the end runs "
        "across midnight); the cluster boots only inside the night, the PCs boot their local "
        "disk outside it; empty (and no whole days): the cluster boots at any hour",
        example=["17:00-09:00"],
        pattern="window",
    )
    time_zone: str = setting(
        "UTC",
        "IANA time zone of the windows and whole days",
        example="Europe/Berlin",
        pattern="zone",
    )
    whole_days: tuple[Weekday, ...] = setting(
        (),
        "weekdays that are night from midnight to midnight (the lab is closed)",
        example=["sat", "sun"],
    )
    holidays: tuple[dt.date, ...] = setting(
        (), "dates (YYYY-MM-DD) that are night all day", example=["2026-12-24", "2026-12-25"]
    )
    stop_new_work_before: int = setting(
        30,
        "minutes before the night ends when nodes stop "
        "taking new work (Slurm drain) and running work gets "
        "its grace period",
        min=0,
        max=720,
    )
    morning: Morning = setting(
        Morning.REBOOT,
        "what a node does when the night ends: reboot "
        "(into the local disk: the boot answer is then the local disk) "
        "or poweroff",
    )
    time_source: ipaddress.IPv4Address | None = setting(
        None,
        "the NTP server the nodes set their clock from; null: serve.address",
        example="10.99.0.1",
    )
    wake_at_start: bool = setting(
        True, "serve sends Wake-on-LAN to every node when the night starts"
    )
    wake_stagger_ms: int = setting(
        200,
        "pause between two Wake-on-LAN packets, so hundreds of PCs do not draw power at once",
        min=0,
        max=60000,
    )

    @property
    def enabled(self) -> bool:
        return bool(self.windows or self.whole_days or self.holidays)


@dataclass(frozen=True, kw_only=True)
class NightModel:
    """The night's top-level chaos.yaml keys."""

    schedule: ScheduleSection = setting(
        ScheduleSection(), "the night window: when the cluster exists"
    )
