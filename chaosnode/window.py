"""The night window: is an instant inside the night, and when does that change.

Pure (the clock is an argument), shared by the build host (boot answers, `show`, `wake`) and
the node (chaos-morning), so both sides agree on the edges. The night is the union of:
  - daily windows "HH:MM-HH:MM" judged by the wall clock of the zone (start inclusive, end
    exclusive; a start after the end runs across midnight), and
  - whole days (weekdays such as sat/sun, holiday dates) from local midnight to midnight.
A Friday 17:00-09:00 window with whole weekends thus runs from Friday 17:00 to Monday 09:00.
Wall-clock edges that a daylight-saving change skips are found to the second by bisection.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

WINDOW_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY = 24 * 60
# how far ahead next_change looks: a year of whole days (holidays) plus a week
HORIZON_DAYS = 372


@dataclass(frozen=True)
class Window:
    start: int  # minutes after local midnight
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.start > self.end

    def arcs(self) -> tuple[tuple[int, int], ...]:
        """The window as half-open minute ranges of one day."""
        if self.crosses_midnight:
            return ((self.start, DAY), (0, self.end))
        return ((self.start, self.end),)

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_window(text: str) -> Window:
    """'17:00-09:00' -> Window; ValueError with the reason otherwise."""
    m = WINDOW_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a window such as 17:00-09:00 (HH:MM-HH:MM, 24 h)")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    window = Window(h1 * 60 + m1, h2 * 60 + m2)
    if window.start == window.end:
        raise ValueError(
            f"{text} is empty (start equals end); for a whole day use "
            "schedule.whole_days or schedule.holidays"
        )
    return window


def overlapping(a: Window, b: Window) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a.arcs() for s2, e2 in b.arcs())


@dataclass(frozen=True)
class Night:
    windows: tuple[Window, ...]
    zone: str
    whole_days: frozenset[int] = frozenset()  # 0 = Monday
    holidays: frozenset[dt.date] = frozenset()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)

    def whole_day(self, day: dt.date) -> bool:
        return day.weekday() in self.whole_days or day in self.holidays

    def inside(self, t: dt.datetime) -> bool:
        """Is the aware instant t inside the night (by the zone's wall clock)?"""
        local = t.astimezone(self.tz)
        if self.whole_day(local.date()):
            return True
        minute = local.hour * 60 + local.minute
        return any(s <= minute < e for w in self.windows for s, e in w.arcs())

    def next_change(self, t: dt.datetime) -> dt.datetime | None:
        """The first instant after t whose inside() differs from t's (in the zone's local
        time); None if it never changes within a year (every day whole, or no window and no
        whole day)."""
        now = self.inside(t)
        prev = t
        for cand in self._candidates(t):
            if self.inside(cand) != now:
                return self._bisect(prev, cand, now).astimezone(self.tz)
            prev = cand
        return None

    def _candidates(self, t: dt.datetime) -> Iterator[dt.datetime]:
        """Every instant where the state may change, after t, in order: the window edges and
        local midnights, each wall time in both of its daylight-saving readings."""
        tz, utc = self.tz, dt.UTC
        first = t.astimezone(tz).date()
        edges = sorted({0, *(m for w in self.windows for m in (w.start, w.end))})
        for d in range(HORIZON_DAYS):
            day = first + dt.timedelta(days=d)
            out: set[dt.datetime] = set()
            for minute in edges:
                wall = dt.datetime(
                    day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz
                )
                for fold in (0, 1):
                    inst = wall.replace(fold=fold).astimezone(utc)
                    if inst > t:
                        out.add(inst)
            yield from sorted(out)

    def _bisect(self, before: dt.datetime, after: dt.datetime, state: bool) -> dt.datetime:
        """The first whole second in (before, after] where inside() is no longer state."""
        lo, hi = before, after
        while hi - lo > dt.timedelta(seconds=1):
            mid = lo + (hi - lo) / 2
            mid = mid.replace(microsecond=0)
            if mid <= lo:
                break
            if self.inside(mid) == state:
                lo = mid
            else:
                hi = mid
        return hi


def night_from_settings(
    windows: tuple[str, ...], zone: str, whole_days: tuple[str, ...], holidays: tuple[dt.date, ...]
) -> Night:
    return Night(
        windows=tuple(parse_window(w) for w in windows),
        zone=zone,
        whole_days=frozenset(WEEKDAYS.index(d) for d in whole_days),
        holidays=frozenset(holidays),
    )
