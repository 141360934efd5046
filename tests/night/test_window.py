"""The night window with an injected clock: inside, outside, the edges, across midnight, a
weekend, a holiday and both daylight-saving changes (Europe/Berlin, 2026-03-29 and 2026-10-25)."""

from __future__ import annotations

import datetime as dt

import pytest

from chaosnode.window import Night, Window, overlapping, parse_window

BERLIN = "Europe/Berlin"
UTC = dt.UTC


def night(
    *windows: str,
    zone: str = BERLIN,
    whole_days: tuple[int, ...] = (),
    holidays: tuple[dt.date, ...] = (),
) -> Night:
    return Night(
        tuple(parse_window(w) for w in windows), zone, frozenset(whole_days), frozenset(holidays)
    )


def local(
    y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0, fold: int = 0, zone: str = BERLIN
) -> dt.datetime:
    from zoneinfo import ZoneInfo  # noqa: PLC0415

    return dt.datetime(y, mo, d, h, mi, s, tzinfo=ZoneInfo(zone), fold=fold)


# 2026-11-25 is a Wednesday
@pytest.mark.parametrize(
    ("when", "inside"),
    [
        (local(2026, 11, 25, 12, 0), False),  # midday
        (local(2026, 11, 25, 16, 59, 59), False),  # a second before the start
        (local(2026, 11, 25, 17, 0), True),  # the start is inside
        (local(2026, 11, 25, 23, 59, 59), True),
        (local(2026, 11, 26, 0, 0), True),  # across midnight
        (local(2026, 11, 26, 8, 59, 59), True),
        (local(2026, 11, 26, 9, 0), False),  # the end is outside
    ],
)
def test_inside_and_outside_and_the_edges(when, inside):
    assert night("17:00-09:00").inside(when) is inside


def test_next_change_is_the_next_edge():
    n = night("17:00-09:00")
    assert n.next_change(local(2026, 11, 25, 12)) == local(2026, 11, 25, 17)
    assert n.next_change(local(2026, 11, 25, 17)) == local(2026, 11, 26, 9)
    assert n.next_change(local(2026, 11, 25, 23, 30)) == local(2026, 11, 26, 9)
    assert n.next_change(local(2026, 11, 26, 9)) == local(2026, 11, 26, 17)


def test_a_window_within_one_day():
    n = night("01:00-05:30")
    assert not n.inside(local(2026, 11, 25, 0, 59))
    assert n.inside(local(2026, 11, 25, 1, 0))
    assert not n.inside(local(2026, 11, 25, 5, 30))
    assert n.next_change(local(2026, 11, 25, 3)) == local(2026, 11, 25, 5, 30)


def test_a_weekend_joins_friday_evening_to_monday_morning():
    n = night("17:00-09:00", whole_days=(5, 6))  # sat, sun
    friday = local(2026, 11, 27, 17)
    assert n.inside(local(2026, 11, 28, 12)) and n.inside(local(2026, 11, 29, 12))
    assert n.next_change(friday) == local(2026, 11, 30, 9), "no morning on the weekend"
    assert not n.inside(local(2026, 11, 30, 9))
    assert not n.inside(local(2026, 11, 27, 12)), "friday by day is the students'"


def test_a_holiday_is_night_all_day():
    xmas = dt.date(2026, 12, 24)  # a Thursday
    n = night("17:00-09:00", holidays=(xmas,))
    assert n.inside(local(2026, 12, 24, 12))
    assert n.next_change(local(2026, 12, 23, 17)) == local(2026, 12, 25, 9)
    assert not night("17:00-09:00").inside(local(2026, 12, 24, 12))


def test_spring_forward_the_night_ends_at_nine_local_time():
    # 2026-03-29 02:00 CET -> 03:00 CEST: the night is an hour shorter in UTC
    n = night("17:00-09:00")
    end = n.next_change(local(2026, 3, 28, 17))
    assert end == local(2026, 3, 29, 9)
    assert end is not None and end.astimezone(UTC) == dt.datetime(2026, 3, 29, 7, tzinfo=UTC)
    assert end.astimezone(UTC) - local(2026, 3, 28, 17).astimezone(UTC) == dt.timedelta(hours=15)


def test_fall_back_the_night_is_an_hour_longer():
    n = night("17:00-09:00")
    start = local(2026, 10, 24, 17)
    end = n.next_change(start)
    assert end is not None and end.astimezone(UTC) == dt.datetime(2026, 10, 25, 8, tzinfo=UTC)
    assert end.astimezone(UTC) - start.astimezone(UTC) == dt.timedelta(hours=17)


def test_a_start_the_spring_change_skips_begins_at_the_jump():
    # 02:30 does not exist on 2026-03-29; the wall clock passes it at 03:00 CEST (01:00 UTC)
    n = night("02:30-05:00")
    start = n.next_change(local(2026, 3, 29, 0))
    assert start == dt.datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert start is not None
    assert n.inside(start) and not n.inside(start.astimezone(UTC) - dt.timedelta(seconds=1))


def test_every_day_whole_never_changes():
    n = night(whole_days=tuple(range(7)))
    assert n.inside(local(2026, 11, 25, 12))
    assert n.next_change(local(2026, 11, 25, 12)) is None


def test_utc_zone_and_other_zones_agree_on_instants():
    t = dt.datetime(2026, 11, 25, 16, 30, tzinfo=UTC)  # 17:30 in Berlin
    assert night("17:00-09:00").inside(t)
    assert not night("17:00-09:00", zone="UTC").inside(t)


@pytest.mark.parametrize("text", ["17:00", "24:00-09:00", "17:00-9:00", "17:60-09:00", ""])
def test_malformed_windows_are_refused(text):
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        parse_window(text)


def test_empty_window_is_refused():
    with pytest.raises(ValueError, match="empty"):
        parse_window("09:00-09:00")


def test_overlap_on_the_clock_face():
    assert overlapping(parse_window("17:00-09:00"), parse_window("08:00-10:00"))
    assert overlapping(parse_window("22:00-02:00"), parse_window("23:00-01:00"))
    assert not overlapping(parse_window("17:00-09:00"), parse_window("09:00-10:00"))
    assert not overlapping(Window(60, 120), Window(120, 180))
