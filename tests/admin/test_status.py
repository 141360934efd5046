"""`chaos-build status` from recorded nights (tests/admin/nights/*.jsonl), against golden
files. Update them after an intended change with: CHAOS_UPDATE_GOLDEN=1 make test-unit"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from admintest import GOLDEN, HERE, night_events, write_db

from builder.admin.cli import status
from builder.cli import main
from builder.errors import ChaosError

UPDATE = os.environ.get("CHAOS_UPDATE_GOLDEN") == "1"
NIGHTS = {"ordinary": dt.date(2026, 11, 30), "trouble": dt.date(2026, 12, 1)}
LATER = dt.datetime(2026, 12, 24, tzinfo=dt.UTC)  # long after both nights


@pytest.fixture
def db(tmp_path):
    return write_db(tmp_path / "events.sqlite", [e for name in NIGHTS for e in night_events(name)])


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; run with CHAOS_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("name", NIGHTS)
def test_a_night_as_it_ended(lab, db, name):
    golden(f"{name}.txt", status(lab, db, LATER, NIGHTS[name]))
    golden(f"{name}.json", status(lab, db, LATER, NIGHTS[name], json_out=True))


def test_one_node_of_a_night(lab, db):
    golden("trouble-node02.txt", status(lab, db, LATER, NIGHTS["trouble"], "node02"))


def test_tonight_up_to_now(lab, db):
    """At 20:30 in the ordinary night: three members running jobs, node04 pending."""
    now = dt.datetime(2026, 11, 30, 20, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    report = json.loads(status(lab, db, now, json_out=True))
    states = {n["node"]: (n["state"], n["jobs"], n["reason"]) for n in report["nodes"]}
    assert states == {
        "node01": ("running", 2, ""),
        "node02": ("running", 4, ""),
        "node03": ("running", 4, ""),
        "node04": ("booted", 0, "pending: unregistered"),
    }
    assert report["totals"]["running"] == 3


def test_a_node_the_lab_does_not_have(lab, db):
    with pytest.raises(ChaosError, match="no node named 'node99'"):
        status(lab, db, LATER, None, "node99")


def test_the_command_line(db, capsys):
    code = main(
        [
            "status",
            "-c",
            str(HERE / "lab.yaml"),
            "--run-dir",
            str(db.parent),
            "--night",
            "2026-11-30",
        ]
    )
    assert code == 0 and capsys.readouterr().out == (GOLDEN / "ordinary.txt").read_text()
    assert (
        main(
            [
                "status",
                "-c",
                str(HERE / "lab.yaml"),
                "--run-dir",
                str(db.parent),
                "--night",
                "30.11.",
            ]
        )
        != 0
    )
    assert "not a date" in capsys.readouterr().err


def test_status_on_a_corrupt_record_says_what_to_do(tmp_path, capsys):
    db = tmp_path / "events.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\x13" * 4096)
    assert main(["status", "-c", str(HERE / "lab.yaml"), "--run-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "corrupt" in err and f"mv {db}" in err and "Traceback" not in err
