"""The daytime pending reason (chaosnode.daytime): by day every pending job's Comment says
the cluster is asleep until the night begins, a user's own comment is kept, the night clears
what chaos set. Unit tests with a recorded squeue; then the image's real slurmctld."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from head.slurmroot import SlurmRoot, rootfs_of

from builder.config import load_cluster
from builder.image.build import cache_lock
from builder.image.context import BuildContext
from builder.image.rootfs import install_rootfs
from chaosnode import daytime
from chaosnode.contract.night import NightSettings
from chaosnode.window import night_from_settings

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("CHAOS_IMAGE_CACHE", "/var/tmp/chaos-image-cache"))
GOLDEN = ROOT / "tests/golden/head/head"
NIGHT = night_from_settings(("17:00-09:00",), "Europe/Berlin", (), ())
DAY = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)  # 12:00 in Berlin, a Wednesday
AT_NIGHT = dt.datetime(2026, 12, 2, 17, 30, tzinfo=dt.UTC)
REASON = "the cluster is asleep until the night begins at 2026-12-02 17:00 CET"


class FakeSlurm:
    def __init__(self, jobs: dict[str, str]) -> None:
        self.jobs = jobs
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if argv[0] == "squeue":
            out = "".join(f"{j}|{c or '(null)'}\n" for j, c in self.jobs.items())
            return subprocess.CompletedProcess(list(argv), 0, out, "")
        job, text = argv[2].removeprefix("jobid="), argv[3].removeprefix("comment=")
        self.jobs[job] = text
        return subprocess.CompletedProcess(
            list(argv), 1, "", "Requested partition configuration not available now"
        )


def test_the_reason_names_the_nights_start_in_its_zone() -> None:
    assert daytime.asleep_reason(NIGHT, DAY) == REASON
    assert daytime.asleep_reason(NIGHT, AT_NIGHT) == ""


def test_by_day_pending_jobs_get_the_reason_and_a_users_comment_is_kept() -> None:
    slurm = FakeSlurm({"7": "", "8": "mine, hands off"})
    assert daytime.step(slurm, NIGHT, DAY) == ["7"]
    assert slurm.jobs == {"7": REASON, "8": "mine, hands off"}
    assert daytime.step(slurm, NIGHT, DAY) == []  # read back: nothing to do
    assert daytime.step(slurm, NIGHT, AT_NIGHT) == ["7"]
    assert slurm.jobs == {"7": "", "8": "mine, hands off"}


def test_a_failing_squeue_changes_nothing() -> None:
    def fail(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 1, "", "slurmctld is down")

    assert daytime.step(fail, NIGHT, DAY) == []


def test_the_heads_squeue_format_is_the_one_daytime_declares() -> None:
    env = (ROOT / "overlays/head/always-on/etc/environment").read_text().strip()
    assert env == f'SQUEUE_FORMAT="{daytime.SQUEUE_FORMAT}"'


def test_the_golden_heads_night_is_the_one_chaos_slurm_follows() -> None:
    settings = NightSettings.loads((GOLDEN / "etc/chaos/night.json").read_text())
    assert settings.always_on and settings.enabled


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmRoot]:
    if os.geteuid() != 0:
        pytest.skip("the image's slurmctld runs in a chroot and a namespace: needs root")
    work = tmp_path_factory.mktemp("daytime")
    cluster = load_cluster(ROOT / "tests/golden/head.yaml")[0]
    ctx = BuildContext(cluster=cluster, nodes_dir=work, out_dir=work / "out", cache_dir=CACHE_DIR)
    rootfs = rootfs_of(ctx)
    if rootfs is None:
        with cache_lock(CACHE_DIR):  # the image tier builds it anyway (~1 min, apt cache)
            install_rootfs(ctx)
        rootfs = ctx.rootfs_dir
    root = SlurmRoot(
        rootfs,
        work / "slurm",
        (GOLDEN / "etc/slurm/slurm.conf").read_text(),
        (GOLDEN / "etc/chaos/users.conf").read_text(),
    )
    try:
        yield root
    finally:
        root.close()


@pytest.mark.image
def test_squeue_on_the_head_says_the_cluster_is_asleep(slurm: SlurmRoot) -> None:
    def submit(*argv: str) -> str:
        out = slurm.chroot(["sbatch", "--parsable", *argv], user="alice").stdout
        return out.strip().split(";")[0]

    array = submit("--array=1-20", "--wrap", "echo task $SLURM_ARRAY_TASK_ID")
    long = submit("--wrap", "sleep 3600")
    own = submit("--comment=alice's own note", "--wrap", "true")
    changed = daytime.step(slurm.runner, NIGHT, DAY)
    assert changed == sorted([array, long])
    shown = slurm.chroot(
        ["squeue"], user="alice", env={"SQUEUE_FORMAT": daytime.SQUEUE_FORMAT}
    ).stdout
    print(shown)
    lines = {line.split()[0]: line for line in shown.splitlines()[1:]}
    assert REASON in lines[f"{array}_[1-20]"] and " PD " in lines[f"{array}_[1-20]"]
    assert REASON in lines[long] and "(PartitionConfig)" in lines[long]
    assert "alice's own note" in lines[own] and REASON not in lines[own]
    assert daytime.step(slurm.runner, NIGHT, DAY) == []
    assert daytime.step(slurm.runner, NIGHT, AT_NIGHT) == sorted([array, long])
    shown = slurm.chroot(["squeue"], env={"SQUEUE_FORMAT": daytime.SQUEUE_FORMAT}).stdout
    assert "asleep" not in shown and "alice's own note" in shown
