"""chaos-morning with an injected clock and sleep: the node drains before the end, waits for
running work no longer than the end, leaves tyd and reboots at the end; the Slurm seam
(scontrol only when it exists) with a real program on PATH."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

from chaostest import ROOT

from builder.config import load_cluster
from builder.features.night import night_settings
from builder.night.model import Morning, NightModel, ScheduleSection
from chaosnode.morning import NightSettings, NodeActions, morning

UTC = dt.UTC
START = dt.datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # a Wednesday, an hour before 09:00 UTC


def settings(**over: object) -> NightSettings:
    base = NightSettings(
        node="node01",
        windows=("17:00-09:00",),
        time_zone="UTC",
        whole_days=(),
        holidays=(),
        stop_new_work_before=20,
        morning="reboot",
        time_source="10.99.0.1",
    )
    return dataclasses.replace(base, **over)  # type: ignore[arg-type]


class FakeNode:
    """Records every action with the (fake) time it happened at."""

    def __init__(self, jobs: list[int]) -> None:
        self.now = START
        self.jobs = jobs
        self.done: list[tuple[str, dt.datetime]] = []

    def clock(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert 0 < seconds <= 30, "never sleeps past the next look at the clock"
        self.now += dt.timedelta(seconds=seconds)

    def drain(self, node: str, reason: str) -> str:
        self.done.append((f"drain {node} {reason}", self.now))
        return "drained"

    def running_work(self, node: str) -> int:
        return self.jobs.pop(0) if self.jobs else 0

    def end_work(self, node: str) -> str:
        self.done.append(("end work", self.now))
        return "job 7 requeued"

    def leave(self) -> str:
        self.done.append(("leave", self.now))
        return "tyd stopped"

    def tell_left(self, node: str) -> str:
        self.done.append((f"tell {node} left", self.now))
        return "serve told"

    def power(self, what: str) -> str:
        self.done.append((what, self.now))
        return "ok"


def run(node: FakeNode, s: NightSettings) -> list[str]:
    said: list[str] = []
    assert morning(s, node, clock=node.clock, sleep=node.sleep, say=said.append) == 0
    return said


def at(h: int, m: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, 25, h, m, tzinfo=UTC)


def test_drain_before_the_end_then_leave_and_reboot_at_the_end():
    node = FakeNode(jobs=[2, 1])
    said = run(node, settings())
    assert node.done == [
        ("drain node01 chaos: night ends 09:00", at(8, 40)),
        ("end work", at(9)),
        ("leave", at(9)),
        ("tell node01 left", at(9)),
        ("reboot", at(9)),
    ]
    assert any("2 job(s) still running" in s for s in said)
    assert any("the night's work ends: job 7 requeued" in s for s in said)


def test_running_work_gets_no_more_than_the_end():
    node = FakeNode(jobs=[5] * 10_000)
    run(node, settings(morning="poweroff"))
    assert node.done[-4:] == [
        ("end work", at(9)),
        ("leave", at(9)),
        ("tell node01 left", at(9)),
        ("poweroff", at(9)),
    ]


def test_a_node_booted_by_day_leaves_at_the_end_of_the_next_night_not_at_once():
    node = FakeNode(jobs=[])
    node.now = at(12)  # an ISO boot by day must not reboot at once (and loop)
    said = run(node, settings())
    tomorrow = dt.datetime(2026, 11, 26, 9, tzinfo=UTC)
    assert node.done == [
        ("drain node01 chaos: night ends 09:00", tomorrow - dt.timedelta(minutes=20)),
        ("end work", tomorrow),
        ("leave", tomorrow),
        ("tell node01 left", tomorrow),
        ("reboot", tomorrow),
    ]
    assert "outside the night" in said[0]


def test_without_a_schedule_the_node_stays():
    node = FakeNode(jobs=[])
    said = run(node, settings(windows=()))
    assert node.done == [] and "no schedule" in said[0]


def test_the_rendered_settings_read_back_the_same(default_cluster):
    schedule = ScheduleSection(
        windows=("17:00-09:00",),
        time_zone="Europe/Berlin",
        holidays=(dt.date(2026, 12, 24),),
        morning=Morning.POWEROFF,
    )
    cluster = default_cluster.with_section(NightModel(schedule=schedule))
    written = night_settings(cluster, cluster.nodes[0])
    read = NightSettings.loads(written.dumps("generated"))
    assert read == written and read.time_source == "10.99.0.1", "serve.address by default"
    assert read.night().inside(dt.datetime(2026, 12, 24, 12, tzinfo=UTC)), "the holiday"


def test_drain_calls_scontrol_only_when_slurm_is_there(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert "no Slurm" in NodeActions().drain("node01", "chaos: night ends 09:00")
    assert NodeActions().running_work("node01") == 0
    bin_dir, log = tmp_path / "bin", tmp_path / "argv"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {log}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    result = NodeActions().drain("node01", "chaos: night ends 09:00")
    assert "exit 0" in result
    assert Path(log).read_text().splitlines() == [
        "update",
        "nodename=node01",
        "state=drain",
        "reason=chaos: night ends 09:00",
    ]


def fake_slurm(bin_dir: Path, log: Path, rounds: Path) -> None:
    """squeue lists jobs 5 and 6 running until slurmd has ended them (two looks later);
    scontrol requeue accepts 5 and refuses 6 (--no-requeue); every call is logged."""
    bin_dir.mkdir()
    rounds.write_text("0")
    tools = {
        "squeue": (
            f'echo "squeue $*" >> {log}; n=$(cat {rounds}); echo $((n+1)) > {rounds}\n'
            'if [ "$n" -lt 3 ]; then printf "5\\n6\\n"; fi\n'
        ),
        "scontrol": (
            f'echo "scontrol $*" >> {log}\n'
            'if [ "$2" = 6 ]; then echo "Requested operation is presently disabled" >&2;'
            " exit 1; fi\n"
        ),
        "scancel": f'echo "scancel $*" >> {log}\n',
    }
    for name, body in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}")
        tool.chmod(0o755)


def test_end_work_requeues_cancels_the_opted_out_and_waits_for_the_node_to_empty(
    tmp_path, monkeypatch
):
    log, rounds = tmp_path / "calls", tmp_path / "rounds"
    fake_slurm(tmp_path / "bin", log, rounds)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setattr("chaosnode.morning.END_WORK_LOOK", 0.01)
    said = NodeActions().end_work("node03")
    calls = log.read_text().splitlines()
    assert calls[0] == "squeue -h -w node03 -t running -o %A"
    assert calls[1:4] == ["scontrol requeue 5", "scontrol requeue 6", "scancel 6"]
    assert calls[4:] == ["squeue -h -w node03 -t all -o %A"] * 3, "waits until the node is empty"
    assert said.startswith("job 5 requeued; job 6 not requeued (Requested operation is")
    assert said.endswith("the node holds no job")


def test_end_work_with_nothing_running_touches_nothing(tmp_path, monkeypatch):
    log, rounds = tmp_path / "calls", tmp_path / "rounds"
    fake_slurm(tmp_path / "bin", log, rounds)
    rounds.write_text("9")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")
    assert NodeActions().end_work("node03") == "no job is running"
    assert log.read_text().splitlines() == ["squeue -h -w node03 -t running -o %A"]


def test_the_always_on_head_has_no_morning():
    node = FakeNode(jobs=[3])
    node.now = at(8, 50)  # inside the night, ten minutes before its end
    said = run(node, settings(always_on=True))
    assert node.done == [] and "no morning" in said[0]


def test_night_json_says_always_on_only_for_the_always_on_head():
    cluster, _ = load_cluster(ROOT / "tests/golden/head.yaml")
    read = {
        n.name: NightSettings.loads(night_settings(cluster, n).dumps("x")).always_on
        for n in cluster.nodes
    }
    assert read == {"head": True, "pc1": False, "pc2": False}
