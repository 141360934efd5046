"""Why a job pends by day, on the always-on head (issue 21).

By day no compute node is up, so Slurm's own reason for a pending job is only a code
(`PartitionConfig`: the partition has no node). chaos-slurm says why, in the job's Comment:
"the cluster is asleep until the night begins at 2026-12-02 17:00 CET", shown by squeue on
the head (its SQUEUE_FORMAT, in /etc/environment of overlays/head/always-on, adds the %k column). A
Comment the user gave (sbatch --comment) is never touched; when the night begins chaos
clears the ones it set. Stateless: each round reads the comments back from squeue, so a
restart of chaos-slurm or of the head changes nothing. (AdminComment, which only admins set,
would be the cleaner field, but squeue 22.05 cannot show it.)

Stdlib only: this runs on the nodes under Debian's python3.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable, Sequence
from typing import Final

from chaosnode.window import Night

ASLEEP: Final = "the cluster is asleep until the night begins"
# squeue's default columns (22.05), then the Comment
SQUEUE_FORMAT: Final = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R %k"

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def asleep_reason(night: Night, now: dt.datetime) -> str:
    """ "" inside the night, else why jobs pend and until when."""
    if night.inside(now):
        return ""
    start = night.next_change(now)
    return ASLEEP if start is None else f"{ASLEEP} at {start:%Y-%m-%d %H:%M %Z}"


def job_comments(runner: Run, states: str) -> dict[str, str] | None:
    """Job (an array once, by its ArrayJobId) -> its Comment; None when squeue failed."""
    shown = runner(["squeue", "--noheader", f"--states={states}", "--format=%F|%k"])
    if shown.returncode != 0:
        return None
    jobs = {}
    for line in shown.stdout.splitlines():
        job, _, comment = line.partition("|")
        comment = comment.strip()
        if job.strip().isdigit():
            jobs[job.strip()] = "" if comment == "(null)" else comment
    return jobs


def set_comment(runner: Run, job: str, text: str) -> None:
    # Slurm applies the update, then says the pending job's partition has no node for it
    # (exit 1): the next round reads the comment back, so the exit code is not trusted
    runner(["scontrol", "update", f"jobid={job}", f"comment={text}"])


def step(runner: Run, night: Night, now: dt.datetime) -> list[str]:
    """One round; returns the jobs whose Comment chaos set or cleared."""
    reason = asleep_reason(night, now)
    jobs = job_comments(runner, "PENDING" if reason else "PENDING,RUNNING")
    if jobs is None:
        return []
    changed = []
    for job, comment in sorted(jobs.items()):
        ours = comment == "" or comment.startswith(ASLEEP)
        if ours and comment != reason:
            set_comment(runner, job, reason)
            changed.append(job)
    return changed
