"""chaosnode.slurm: Slurm follows tyd's map. The pure parts with real map documents and real
`scontrol --oneliner` lines; the commands through a recording runner (the real daemons run in
the smoke scenario `workload`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from chaosnode import slurm

SCONTROL = (
    "NodeName=node01 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 CPUEfctv=1 CPUTot=1 "
    "Features=(null) NodeAddr=node01 NodeHostName=node01 RealMemory=1961 "
    "State=IDLE+DYNAMIC_NORM ThreadsPerCore=1 Partitions=chaos\n"
    "NodeName=node02 Arch=x86_64 CPUTot=1 State=ALLOCATED+DYNAMIC_NORM Partitions=chaos\n"
    "NodeName=node03 Arch=x86_64 CPUTot=1 State=IDLE+DYNAMIC_NORM Partitions=chaos\n"
)


def tyd_map(states: dict[str, str]) -> dict[str, object]:
    return {
        "cluster": "chaos-lab",
        "node": "node01",
        "version": 3,
        "members": [{"name": n, "address": "10.99.0.11", "state": s} for n, s in states.items()],
    }


class Recorder:
    def __init__(self, fail: Sequence[str] = ()) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        out = SCONTROL if argv[:2] == ["scontrol", "show"] else ""
        rc = 1 if any(f in " ".join(argv) for f in self.fail) else 0
        return subprocess.CompletedProcess(list(argv), rc, out, "error" if rc else "")


def settings(tmp_path: Path, head: bool, compute: bool) -> Path:
    doc = {
        "workload": "slurm",
        "node": "node01" if head else "node02",
        "head": "node01",
        "head_address": "10.99.0.11",
        "slurmctld": head,
        "slurmd": compute,
        "tyd_map": str(tmp_path / "map.json"),
        "munge_key": str(tmp_path / "munge.key"),
    }
    path = tmp_path / "slurm.json"
    path.write_text(json.dumps(doc))
    return path


def test_live_members_are_alive_or_suspect():
    doc = tyd_map({"node01": "alive", "node02": "suspect", "node03": "dead", "node04": "left"})
    assert slurm.live_members(doc) == {"node01", "node02"}
    assert slurm.live_members({"members": "garbage"}) == set()
    assert slurm.live_members([1, 2]) == set()


def test_scontrol_oneliner_is_parsed():
    assert slurm.slurm_nodes(SCONTROL) == {
        "node01": "IDLE+DYNAMIC_NORM",
        "node02": "ALLOCATED+DYNAMIC_NORM",
        "node03": "IDLE+DYNAMIC_NORM",
    }


def test_only_nodes_tyd_removed_leave_slurm():
    # node03 registered with Slurm before the head's map listed it: it stays
    assert slurm.departed({"node01"}, {"node01"}, ["node01", "node03"]) == []
    assert slurm.departed({"node01", "node03"}, {"node01"}, ["node01", "node03"]) == ["node03"]


def test_head_deletes_a_removed_node_or_downs_it_while_it_holds_a_job(tmp_path):
    s = slurm.load_settings(settings(tmp_path, head=True, compute=True))
    run = Recorder(fail=("delete nodename=node02",))
    follower = slurm.Follower(s, run)
    assert follower.step({"node01", "node02", "node03"}) == []
    assert not [c for c in run.calls if c[1] != "show"]
    assert follower.step({"node01"}) == ["node03"]
    assert ["scontrol", "delete", "nodename=node03"] in run.calls
    assert [
        "scontrol",
        "update",
        "nodename=node02",
        "state=down",
        f"reason={slurm.REASON}",
    ] in run.calls
    run.calls.clear()
    follower.step({"node01"})  # still allocated: downed once, not again
    assert not [c for c in run.calls if c[1] == "update"]


def test_compute_node_starts_slurmd_only_once_the_head_is_in_the_map(tmp_path, monkeypatch):
    path = settings(tmp_path, head=False, compute=True)
    (tmp_path / "munge.key").write_bytes(b"k" * 128)
    map_file = tmp_path / "map.json"
    map_file.write_text(json.dumps(tyd_map({"node02": "alive"})))
    run = Recorder()
    rounds = []

    def sleep(_: float) -> None:  # the head joins tyd's map after two polls
        rounds.append(1)
        assert ["systemctl", "start", "slurmd.service"] not in run.calls
        if len(rounds) == 2:
            map_file.write_text(json.dumps(tyd_map({"node02": "alive", "node01": "alive"})))

    # the state directories belong to munge and slurm on a node; nothing to chown here
    monkeypatch.setattr(slurm, "own_state_dirs", lambda: None)
    assert slurm.main(["--settings", str(path)], run, sleep) == 0
    assert run.calls == [
        ["systemctl", "start", "munge.service"],
        ["systemctl", "start", "slurmd.service"],
    ]
    assert len(rounds) == 2


def test_no_munge_key_means_no_slurm(tmp_path, capsys):
    path = settings(tmp_path, head=True, compute=True)
    run = Recorder()
    assert slurm.main(["--settings", str(path), "--once"], run, lambda _: None) == 1
    assert run.calls == []
    assert "no munge key" in capsys.readouterr().err


def test_bad_settings_are_reported_not_raised(tmp_path, capsys):
    (tmp_path / "slurm.json").write_text("{")
    assert slurm.main(["--settings", str(tmp_path / "slurm.json")]) == 2
    assert "slurm.json" in capsys.readouterr().err
