"""The event record: every kind into the database and back, a corrupt or missing database
reported clearly, recording that never blocks."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from admintest import night_events, write_db

from builder.admin import events
from builder.admin.events import Event, EventDbError, EventLog, Kind

T0 = dt.datetime(2026, 11, 30, 16, 0, tzinfo=dt.UTC)


def one_of_each() -> list[Event]:
    return [
        Event(
            T0 + dt.timedelta(seconds=i),
            kind,
            f"node0{i % 3 + 1}",
            f"52:54:00:99:00:1{i % 3 + 1}",
            f"10.99.0.1{i % 3 + 1}",
            f"detail {i}",
            i,
        )
        for i, kind in enumerate(Kind)
    ]


def test_every_kind_goes_in_and_comes_back(tmp_path):
    evs = one_of_each()
    db = events.connect(write_db(tmp_path / "e.sqlite", evs), readonly=True)
    assert events.read(db) == evs
    assert {e.kind for e in events.read(db)} == set(Kind)
    assert events.read(db, node="node02") == [e for e in evs if e.node == "node02"]
    assert events.read(db, since=evs[2].t, until=evs[4].t) == evs[2:4]


def test_the_database_is_wal(tmp_path):
    write_db(tmp_path / "e.sqlite", one_of_each())
    mode = sqlite3.connect(tmp_path / "e.sqlite").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)


def test_a_recorded_night_round_trips(tmp_path):
    evs = night_events("ordinary")
    db = events.connect(write_db(tmp_path / "e.sqlite", evs), readonly=True)
    assert events.read(db) == sorted(evs, key=lambda e: e.t)


def corrupt(path):
    path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4096)


def test_a_corrupt_database_is_reported_with_what_to_do(tmp_path):
    path = tmp_path / "e.sqlite"
    corrupt(path)
    with pytest.raises(EventDbError) as err:
        events.connect(path)
    message = str(err.value)
    assert str(path) in message and "corrupt" in message and f"mv {path}" in message


def test_serve_goes_on_without_a_record_when_the_database_is_corrupt(tmp_path):
    path = tmp_path / "e.sqlite"
    corrupt(path)
    said: list[str] = []
    log = EventLog(path, said.append).start()
    log.record(one_of_each()[0])  # returns at once; nothing raised into serve
    log.stop()
    assert log.broken and log.dropped == 1
    assert len(said) == 1 and "goes on answering boots" in said[0] and "corrupt" in said[0]


def test_a_missing_record_is_named(tmp_path):
    with pytest.raises(EventDbError, match="no such file.*--run-dir"):
        events.connect(tmp_path / "none.sqlite", readonly=True)


def test_recording_never_blocks_when_the_queue_is_full(tmp_path):
    log = EventLog(tmp_path / "e.sqlite", say=print, queue_max=2)  # not started: no writer
    for e in one_of_each()[:5]:
        log.record(e)
    assert log.dropped == 3


def test_a_write_error_turns_the_record_off_once(tmp_path):
    said: list[str] = []
    log = EventLog(tmp_path / "e.sqlite", said.append).start()
    log.record(one_of_each()[0])
    log.flush()
    sqlite3.connect(tmp_path / "e.sqlite").execute("DROP TABLE events").connection.commit()
    for e in one_of_each():
        log.record(e)
    log.flush()
    log.stop()
    assert log.written == 1 and log.broken and len(said) == 1
    assert log.dropped == len(one_of_each())


def test_a_full_disk_is_named():
    err = events._explain(
        events.Path("/srv/e.sqlite"), sqlite3.OperationalError("database or disk is full")
    )
    assert "the disk is full" in str(err) and "--run-dir" in str(err)


def test_the_enrollment_service_and_wake_record_through_the_active_log(lab, tmp_path):
    from chaosnode.enrollment import FINISH_PATH, START_PATH, ProtocolError

    log = EventLog(tmp_path / "e.sqlite", say=print).start()
    events.activate(log)
    try:
        events.enrollment_outcome(lab, START_PATH, "10.99.0.12", "node02", None)  # a challenge
        events.enrollment_outcome(lab, FINISH_PATH, "10.99.0.12", "node02", None)
        events.enrollment_outcome(
            lab, START_PATH, "10.99.0.14", "node04", ProtocolError("unregistered", "not registered")
        )
        events.enrollment_outcome(
            lab,
            START_PATH,
            "10.99.0.99",
            "pc99",
            ProtocolError("unknown_node", "no node named 'pc99'"),
        )
        events.woke(lab.nodes[:2], "br0")
    finally:
        events.activate(None)
    log.flush()
    log.stop()
    got = [
        (e.kind, e.node, e.mac, e.address, e.detail.split(":")[0])
        for e in events.read(events.connect(tmp_path / "e.sqlite", readonly=True))
    ]
    assert got == [
        (Kind.ENROLLED, "node02", "52:54:00:99:00:12", "10.99.0.12", ""),
        (Kind.REFUSED, "node04", "52:54:00:99:00:14", "10.99.0.14", "unregistered"),
        (Kind.PENDING, "node04", "52:54:00:99:00:14", "10.99.0.14", "unregistered"),
        (Kind.REFUSED, "", "", "10.99.0.99", "unknown_node"),
        (Kind.WAKE, "node01", "52:54:00:99:00:11", "", "br0"),
        (Kind.WAKE, "node02", "52:54:00:99:00:12", "", "br0"),
    ]
    events.record(Event(T0, Kind.WAKE))  # no active log: nothing happens
