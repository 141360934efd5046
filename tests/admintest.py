"""Helpers of the admin tests (tests/admin, tests/integration/test_admin_page.py): the lab
with a night, recorded nights as event files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from builder.admin import events
from builder.config import load_cluster
from builder.model import Cluster

HERE = Path(__file__).parent / "admin"
NIGHTS = HERE / "nights"
GOLDEN = HERE / "golden"


def lab_cluster() -> Cluster:
    return load_cluster(HERE / "lab.yaml")[0]


def night_events(name: str) -> list[events.Event]:
    """A recorded night: one JSON event a line (# comments)."""
    out = []
    for line in (NIGHTS / f"{name}.jsonl").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            d = json.loads(line)
            out.append(
                events.Event(
                    dt.datetime.fromisoformat(d["t"]),
                    events.Kind(d["kind"]),
                    d["node"],
                    d["mac"],
                    d["address"],
                    d["detail"],
                    d["value"],
                )
            )
    return out


def write_db(path: Path, evs: list[events.Event]) -> Path:
    """The events written through the real writer (thread, queue, batches)."""
    log = events.EventLog(path, say=lambda m: pytest.fail(m)).start()
    for e in evs:
        log.record(e)
    log.flush()
    log.stop()
    return path
