"""chaos-morning: the end of the night on a node (chaos-morning.service).

The node reads the night rendered for it (/etc/chaos/night.json, from chaos.yaml's schedule;
its clock comes from the network: systemd-timesyncd with schedule.time_source). At the end
minus schedule.stop_new_work_before it stops taking new work (Slurm drain, when Slurm is on
the node), waits for running work until the end, then ends the work still running (Slurm
requeues each job; one that opted out with --no-requeue is cancelled) and waits, at most
END_WORK_TIMEOUT seconds, until no job is left on the node: a job's processes would
otherwise hold the reboot (systemd's stop timeouts, the home's NFS unmount) for minutes, past
the night. Then it stops tyd (tyd's SIGTERM announces LEAVE to every member), tells serve it
left (a member push, at most LEFT_TIMEOUT seconds: the admin's status shows why it went) and
reboots (the boot answer is then the local disk) or powers off.

    python3 -I -m chaosnode.morning [--settings /etc/chaos/night.json] [--dry-run]

The clock, the sleep and the actions are arguments, so tests run a whole night in
microseconds with fakes; `--dry-run` prints the plan and exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from chaosnode.console import say
from chaosnode.contract.night import NightSettings
from chaosnode.paths import NIGHT_JSON, NODE_JSON
from chaosnode.push import FAILURES, MemberPush, node_sender

# never sleep longer than this between two looks at the clock: NTP may step it
LOOK_SECONDS = 30.0
# the morning's push to serve may hold the reboot this long, no longer
LEFT_TIMEOUT = 5.0
# ending the night's jobs may hold the leave this long (Slurm's KillWait is 30 s), no longer
END_WORK_TIMEOUT = 60.0
END_WORK_LOOK = 2.0


class Actions(Protocol):
    def drain(self, node: str, reason: str) -> str: ...
    def running_work(self, node: str) -> int: ...
    def end_work(self, node: str) -> str: ...
    def leave(self) -> str: ...
    def tell_left(self, node: str) -> str: ...
    def power(self, morning: str) -> str: ...


class NodeActions:
    """The real actions: scontrol only when Slurm is installed, systemctl for the rest."""

    def _run(self, argv: list[str]) -> str:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        return f"{' '.join(argv)}: exit {r.returncode} {r.stderr.strip()[-200:]}".strip()

    def drain(self, node: str, reason: str) -> str:
        if shutil.which("scontrol") is None:
            return "no Slurm on this node: nothing to drain"
        return self._run(
            ["scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}"]
        )

    def jobs_on(self, node: str, states: str) -> list[str]:
        """The ids of the jobs on node in states (squeue's -t; "all" for any)."""
        if shutil.which("squeue") is None:
            return []
        r = subprocess.run(
            ["squeue", "-h", "-w", node, "-t", states, "-o", "%A"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return r.stdout.split() if r.returncode == 0 else []

    def running_work(self, node: str) -> int:
        return len(self.jobs_on(node, "running"))

    def end_work(self, node: str) -> str:
        """Requeue every job still running here (root may: slurmctld trusts uid 0); a job
        that opted out (--no-requeue) refuses, and is cancelled. Then wait until slurmd has
        ended them all (the node holds no job in any state), END_WORK_TIMEOUT at most."""
        running = self.jobs_on(node, "running")
        if not running:
            return "no job is running"
        said = []
        for job in running:
            r = subprocess.run(
                ["scontrol", "requeue", job], capture_output=True, text=True, timeout=60
            )
            if r.returncode == 0:
                said.append(f"job {job} requeued")
                continue
            why = r.stderr.strip()[-120:]
            cancel = self._run(["scancel", job])
            said.append(f"job {job} not requeued ({why}): {cancel}")
        deadline = time.monotonic() + END_WORK_TIMEOUT
        while (left := self.jobs_on(node, "all")) and time.monotonic() < deadline:
            time.sleep(END_WORK_LOOK)
        if left:
            said.append(f"still on the node after {END_WORK_TIMEOUT:.0f} s: {' '.join(left)}")
        else:
            said.append("the node holds no job")
        return "; ".join(said)

    def leave(self) -> str:
        """Stop tyd (its SIGTERM announces LEAVE); tyd's own words about leaving go with the
        answer, so the console shows whom it told."""
        stopped = self._run(["systemctl", "stop", "tyd.service"])
        r = subprocess.run(
            ["journalctl", "-b", "-u", "tyd.service", "-n", "30", "-o", "cat", "--no-pager"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        words = [ln for ln in r.stdout.splitlines() if "leaving" in ln or "LEAVE" in ln]
        return f"{stopped}; tyd: {' / '.join(words) or 'said nothing about leaving'}"

    def tell_left(self, node: str, node_json: Path = Path(NODE_JSON)) -> str:
        """serve's record gets `left: morning` (chaosnode.push); a failure holds nothing up."""
        try:
            _, send_one = node_sender(node_json, LEFT_TIMEOUT)
        except (OSError, ValueError) as exc:
            return f"serve not told: cannot read {node_json}: {exc}"
        if send_one is None:
            return "serve not told: node.json names no push address (serve.address unset)"
        try:
            send_one(MemberPush(node, "left", why="morning"))
        except FAILURES as exc:
            return f"serve not told ({exc}); going on"
        return "serve told: left (morning)"

    def power(self, morning: str) -> str:
        return self._run(["systemctl", "poweroff" if morning == "poweroff" else "reboot"])


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sleep_until(
    when: dt.datetime, clock: Callable[[], dt.datetime], sleep: Callable[[float], None]
) -> None:
    while (left := (when - clock()).total_seconds()) > 0:
        sleep(min(left, LOOK_SECONDS))


def morning(
    settings: NightSettings,
    actions: Actions,
    clock: Callable[[], dt.datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = say,
) -> int:
    """Run the end of this night; returns when the node has been told to reboot/power off."""
    if settings.always_on:
        say("chaos-morning: the always-on head has no morning: it stays through the day")
        return 0
    if not settings.enabled:
        say("chaos-morning: no schedule in chaos.yaml: the node stays until it is switched off")
        return 0
    night = settings.night()
    now = clock()
    if not night.inside(now):
        # booted by hand by day (a USB stick, or a clock that was wrong at boot): never leave
        # at once (an ISO boot would loop); the node leaves at the end of the next night
        start = night.next_change(now)
        if start is None:
            say("chaos-morning: no night within a year; nothing to do")
            return 0
        say(
            f"chaos-morning: this node runs outside the night; it leaves at the end of the "
            f"night that starts at {start.isoformat()}"
        )
        sleep_until(start, clock, sleep)
        now = clock()
    end = night.next_change(now)
    if end is None:
        say("chaos-morning: the night does not end within a year; nothing to do")
        return 0
    drain_at = end - dt.timedelta(minutes=settings.stop_new_work_before)
    say(
        f"chaos-morning: the night ends at {end.isoformat()}; no new work from "
        f"{drain_at.isoformat()}, then {settings.morning}"
    )
    sleep_until(drain_at, clock, sleep)
    say(f"chaos-morning: {actions.drain(settings.node, f'chaos: night ends {end:%H:%M}')}")
    while clock() < end and (jobs := actions.running_work(settings.node)):
        say(f"chaos-morning: {jobs} job(s) still running; waiting until {end:%H:%M}")
        sleep(min(LOOK_SECONDS, max((end - clock()).total_seconds(), 0.0)))
    sleep_until(end, clock, sleep)
    say(f"chaos-morning: the night's work ends: {actions.end_work(settings.node)}")
    say(f"chaos-morning: leaving the cluster: {actions.leave()}")
    say(f"chaos-morning: {actions.tell_left(settings.node)}")
    say(f"chaos-morning: {settings.morning}: {actions.power(settings.morning)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chaos-morning", description=__doc__.splitlines()[0])
    p.add_argument("--settings", type=Path, default=Path(NIGHT_JSON))
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    args = p.parse_args(argv)
    try:
        settings = NightSettings.loads(args.settings.read_text())
    except (OSError, ValueError, KeyError) as exc:
        print(f"chaos-morning: cannot read {args.settings}: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        night = settings.night() if settings.enabled else None
        now = utc_now()
        state = (
            "no schedule"
            if night is None
            else (f"inside={night.inside(now)} next change {night.next_change(now)}")
        )
        print(f"chaos-morning: {settings.node}: {state}; morning {settings.morning}")
        return 0
    return morning(settings, NodeActions())


if __name__ == "__main__":
    sys.exit(main())
