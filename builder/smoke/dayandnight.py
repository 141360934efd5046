"""The day-and-night lab (issue 21): an always-on head keeps the queue, the users and their
files across two nights of two lab PCs.

Day: the head boots over PXE with a blank state disk; the lab PCs power on and, with no boot
file by day, boot their own disk (the day OS). The user, whose key the lab made, logs in from
the campus namespace, writes two job scripts into their home and submits an array and a long
job; squeue shows them pending, asleep until the night. The negatives: ssh from outside
login_from, a user without a key, NFS and Slurm from the campus, each refused and counted.
First night: the PCs are powered on again and boot the cluster; the array runs, its outputs
land in the home over NFS, ESP on the wire and never NFS in clear; a member cannot reach the
head's sshd. At the night's end the long job is requeued and the PCs boot their disks.
Next day: the head's plug is pulled and it boots again with the same disk: queue and home
survive, with the same host key. Second night: the long job runs again and completes; the
user copies every output off the head with scp and each one's contents are checked.

The long job checkpoints into its home: its first run would outlast any night, a rerun
(SLURM_RESTART_COUNT 1) resumes from the checkpoint and finishes (docs/jobs.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from pathlib import Path
from typing import Protocol

from builder.errors import ChaosError
from builder.head.model import HeadModel
from builder.head.view import EXPORT_OPTIONS, MOUNT_OPTIONS
from builder.model import Cluster
from builder.night.model import Morning, NightModel, ScheduleSection
from builder.smoke import admin_checks
from builder.smoke.campus import Campus, keygen
from builder.smoke.dayos import DAY_OS_MARKER
from builder.smoke.dhcplog import last_answer
from builder.smoke.lab import Guest
from builder.smoke.scenario import Check, DayAndNight
from chaosnode.contract.paths import STATE_HOME
from chaosnode.daytime import ASLEEP

DAY_OS_TIMEOUT = 300.0
QUEUE_TIMEOUT = 180.0  # chaos-slurm's daytime rounds, on a loaded host
OUT = "out"  # the user's folder of job outputs, in their home
NFS_PORT, SLURMCTLD_PORT, SSH_PORT = 2049, 6817, 22
DD_MB = 16
PLAIN_MOUNT = "/run/chaos-nfs-plain"  # the head's loopback mount of its own export


def plain_setup() -> str:
    """The head's loopback export and mount for the NFS-in-clear figure."""
    return (
        f"mkdir -p {PLAIN_MOUNT}"
        f" && exportfs -o {EXPORT_OPTIONS} 127.0.0.1:{STATE_HOME}"
        f" && timeout 30 mount -t nfs4 -o {MOUNT_OPTIONS} 127.0.0.1:{STATE_HOME} {PLAIN_MOUNT}"
    )


def plain_teardown() -> str:
    return f"umount -l {PLAIN_MOUNT}; exportfs -u 127.0.0.1:{STATE_HOME}; rmdir {PLAIN_MOUNT}"


def array_script(user: str, marker: str) -> str:
    return (
        "#!/bin/bash\n"
        "#SBATCH --job-name=chaos-array\n"
        f"#SBATCH --output=/home/{user}/{OUT}/array-%a.out\n"
        f'echo "task $SLURM_ARRAY_TASK_ID uid $(id -u) on $(hostname) {marker}"\n'
    )


def long_script(user: str) -> str:
    """A job longer than any night that checkpoints into the home; its rerun (after the
    requeue) resumes from the checkpoint and finishes."""
    return (
        "#!/bin/bash\n"
        "#SBATCH --job-name=chaos-long\n"
        f"#SBATCH --output=/home/{user}/{OUT}/long.out\n"
        "run=${SLURM_RESTART_COUNT:-0}\n"
        'echo "long run $run on $(hostname)"\n'
        f'echo "checkpoint of run $run" >> /home/{user}/{OUT}/long.ckpt\n'
        'if [ "$run" -eq 0 ]; then sleep 7200; fi\n'
        'echo "long job done in run $run"\n'
    )


class Lab(admin_checks.Lab, Protocol):
    """What this flow needs of the smoke lab (builder.smoke.runner.Smoke), beyond what the
    admin checks need."""

    guests: dict[str, Guest]
    night_end: dt.datetime
    pcap: Path

    def phase(self, text: str) -> None: ...
    def start_guest(
        self,
        name: str,
        mac: str,
        boot: str,
        media: dict[str, Path],
        firmware: None = None,
        state_disk: Path | None = None,
    ) -> Guest: ...
    def wait_ready(self, guests: list[Guest]) -> None: ...
    def run_check(self, check: Check) -> None: ...
    def pcap_text(self, args: list[str]) -> str: ...
    def morning(self) -> None: ...
    def evidence(self) -> None: ...


# -- build -----------------------------------------------------------------------------


def key_path(results: Path, user: str) -> Path:
    return results / "campus" / f"{user}_ed25519"


def with_user_key(cluster: Cluster, dn: DayAndNight, results: Path) -> Cluster:
    """The cluster with the lab user's key, made now (the private half stays in results)."""
    key = key_path(results, dn.user)
    key.parent.mkdir(parents=True, exist_ok=True)
    keygen(key)
    public = key.with_suffix(".pub").read_text().strip()
    users = tuple(
        dataclasses.replace(u, ssh_keys=(public,)) if u.name == dn.user else u
        for u in cluster.section(HeadModel).users
    )
    return cluster.with_section(dataclasses.replace(cluster.section(HeadModel), users=users))


def night_windows(dn: DayAndNight, now: dt.datetime) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    """Each night's UTC start and end: the first whole minute at least starts_after seconds
    from now (never less: 10:40:00.4 plus 300 s starts at 10:46, not 10:45)."""
    out = []
    for night in dn.nights:
        at = now + dt.timedelta(seconds=night.starts_after)
        start = at.replace(second=0, microsecond=0)
        if start < at:
            start += dt.timedelta(minutes=1)
        out.append((start, start + dt.timedelta(minutes=night.minutes)))
    return tuple(out)


def nights_cluster(cluster: Cluster, dn: DayAndNight) -> Cluster:
    """The lab's cluster with its two nights counted from now, in UTC."""
    windows = night_windows(dn, dt.datetime.now(dt.UTC))
    schedule = ScheduleSection(
        windows=tuple(f"{s:%H:%M}-{e:%H:%M}" for s, e in windows),
        time_zone="UTC",
        stop_new_work_before=1,
        morning=Morning.REBOOT,
        wake_at_start=False,
    )
    return cluster.with_section(NightModel(schedule=schedule))


def edges(cluster: Cluster) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    """The nights of the built schedule (HH:MM UTC today) as datetimes."""
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for window in cluster.section(NightModel).schedule.windows:
        a, b = window.split("-")
        start = today.replace(hour=int(a[:2]), minute=int(a[3:]))
        end = today.replace(hour=int(b[:2]), minute=int(b[3:]))
        if start < dt.datetime.now(dt.UTC) - dt.timedelta(hours=12):
            start, end = start + dt.timedelta(days=1), end + dt.timedelta(days=1)
        if end < start:
            end += dt.timedelta(days=1)
        out.append((start, end))
    return tuple(out)


# -- the flow ---------------------------------------------------------------------------


class Flow:
    def __init__(self, lab: Lab, dn: DayAndNight) -> None:
        self.lab = lab
        self.dn = dn
        self.head = lab.cluster.node(dn.head)
        self.head_address = str(self.head.address)
        self.key = key_path(lab.results, dn.user)
        self.campus = Campus(
            f"chaos-campus-{lab.ns.rsplit('-', 1)[-1]}",
            lab.ns,
            dn.campus,
            dn.outsider,
            lab.results / "campus" / "known_hosts",
        )
        self.state_disk = lab.results / dn.head / "state.img"
        self.nights = edges(lab.cluster)
        self.marker = f"CHAOSDN{time.time_ns() % 10**9}"
        self.jobs: dict[str, str] = {}
        self.uid = next(u.uid for u in lab.cluster.section(HeadModel).users if u.name == dn.user)

    # -- small helpers ------------------------------------------------------------------
    def ssh(self, command: str, stdin: bytes | None = None, strict: str = "yes") -> tuple[int, str]:
        r = self.campus.ssh(
            self.key, self.dn.user, self.head_address, command, strict=strict, stdin=stdin
        )
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")

    def on_head(self, argv: list[str]) -> str:
        return self.lab.exec_on(self.dn.head, argv)[1]

    def counter(self, name: str) -> int:
        out = self.on_head(["nft", "list", "counter", "inet", "chaos", name])
        found = re.search(r"packets (\d+)", out)
        return int(found.group(1)) if found else -1

    def queue(self) -> dict[str, tuple[str, str]]:
        """The user's jobs on the head: job id -> (state, comment)."""
        out = self.on_head(["squeue", "-h", "-u", self.dn.user, "-o", "%i|%T|%k"])
        rows = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 3:
                rows[parts[0].strip()] = (parts[1].strip(), parts[2].strip())
        return rows

    def long_state(self) -> str:
        for job, (state, _) in self.queue().items():
            if job == self.jobs.get("long"):
                return state
        return ""

    def wait_until(self, when: dt.datetime, what: str) -> None:
        left = (when - dt.datetime.now(dt.UTC)).total_seconds()
        self.lab.phase(f"waiting {max(left, 0):.0f}s for {what} ({when:%H:%M:%S} UTC)")
        while dt.datetime.now(dt.UTC) < when:
            self.lab.watch()
            time.sleep(2)

    def poll(self, within: float, probe: object) -> tuple[bool, float]:
        """Call probe until it is true or within seconds passed; (ok, seconds taken)."""
        began = time.monotonic()
        while True:
            if probe():  # type: ignore[operator]
                return True, time.monotonic() - began
            if time.monotonic() - began > within:
                return False, time.monotonic() - began
            self.lab.watch()
            time.sleep(3)

    # -- phases ---------------------------------------------------------------------------
    def boot_head(self, title: str) -> None:
        if not self.state_disk.exists():
            self.state_disk.parent.mkdir(parents=True, exist_ok=True)
            with self.state_disk.open("wb") as f:
                f.truncate(256 << 20)  # blank: the head formats it
        old = self.lab.guests.get(self.dn.head)
        if old is not None:
            old.stop()  # the plug pulled: no shutdown
        guest = self.lab.start_guest(
            self.dn.head, self.head.mac, "pxe", {}, state_disk=self.state_disk
        )
        self.lab.wait_ready([guest])
        ok, took = self.poll(180, lambda: self.ssh("true", strict=self.strict)[0] == 0)
        self.strict = "yes"  # the host key seen first must stay the same
        self.lab.check(title, ok, f"{took:.0f}s after CHAOS-READY; {self.ssh('true')[1][-200:]}")

    strict = "accept-new"

    def power_on_pcs(self, night: bool) -> list[Guest]:
        guests = []
        for name in self.lab.members:
            if name in self.lab.guests:
                self.lab.guests[name].stop()
            guests.append(self.lab.start_guest(name, self.lab.cluster.node(name).mac, "pxe", {}))
        if night:
            self.lab.wait_ready(guests)
        return guests

    def day_pcs(self, guests: list[Guest], when: str) -> None:
        dnsmasq = self.lab.results / "serve" / "dnsmasq.log"
        for guest in guests:
            try:
                guest.wait_text(DAY_OS_MARKER, DAY_OS_TIMEOUT)
                booted = True
            except Exception:  # noqa: BLE001 - a failed wait is the check's answer
                booted = False
            answer = last_answer(dnsmasq.read_text(errors="replace"), guest.mac)
            self.lab.check(
                f"{guest.name}: {when}, no boot file; it boots its own disk ({DAY_OS_MARKER})",
                booted and answer is not None and answer.bootfile is None,
                f"last answer: {answer}",
            )

    def submit(self) -> None:
        user = self.dn.user
        rc, out = self.ssh(
            f"mkdir -p {OUT} && cat > array.sh", array_script(user, self.marker).encode()
        )
        rc2, out2 = self.ssh("cat > long.sh", long_script(user).encode())
        self.lab.check(
            f"{user} logs in from campus {self.dn.campus} by key and writes two job scripts "
            "into the home",
            rc == 0 and rc2 == 0,
            (out + out2).strip()[-300:],
        )
        # the long job first: it takes one PC (one CPU each) as the night starts and the
        # array the other, so both run before stop_new_work_before in a short night
        rc2, out2 = self.ssh("sbatch --parsable long.sh")
        self.jobs["long"] = out2.strip().split(";")[0] if rc2 == 0 else ""
        rc, out = self.ssh(f"sbatch --parsable --array=1-{self.dn.array} array.sh")
        self.jobs["array"] = out.strip().split(";")[0] if rc == 0 else ""
        self.lab.check(
            f"sbatch by day: a {self.dn.array}-task array and a long job",
            rc == 0 and rc2 == 0 and self.jobs["array"].isdigit() and self.jobs["long"].isdigit(),
            f"array {out.strip()[-100:]}, long {out2.strip()[-100:]}",
        )

        def asleep() -> bool:
            rows = self.queue()
            mine = [r for j, r in rows.items() if j.split("_")[0] in self.jobs.values()]
            return bool(mine) and all(s == "PENDING" and ASLEEP in c for s, c in mine)

        ok, took = self.poll(QUEUE_TIMEOUT, asleep)
        rc, shown = self.ssh("squeue")
        self.lab.check(
            "squeue by day: every job pending, asleep until the night",
            ok and ASLEEP in shown,
            f"{took:.0f}s; {shown.strip()[-400:]}",
        )
        _, sinfo = self.ssh("sinfo -h -o '%D %t'")
        self.lab.check(
            "sinfo by day: no compute node up", not re.search(r"\bidle|\balloc|\bmix", sinfo), sinfo
        )

    def refusals_by_day(self) -> None:
        before = self.counter("drop_ssh_outsider")
        r = self.campus.ssh(
            self.key, self.dn.user, self.head_address, "true", self.dn.outsider, "yes"
        )
        after = self.counter("drop_ssh_outsider")
        self.lab.check(
            f"ssh from {self.dn.outsider} (campus, outside login_from) is refused and counted",
            r.returncode != 0 and after > before >= 0,
            f"drop_ssh_outsider {before} -> {after}; {r.stderr.decode(errors='replace')[-150:]}",
        )
        r = self.campus.ssh(self.key, self.dn.keyless, self.head_address, "true")
        err = r.stderr.decode(errors="replace")
        self.lab.check(
            f"{self.dn.keyless} (a user without a key) is refused",
            r.returncode != 0 and "Permission denied" in err,
            err.strip()[-150:],
        )
        for port, counter in (
            (NFS_PORT, "drop_nfs_outsider"),
            (SLURMCTLD_PORT, "drop_slurm_outsider"),
        ):
            before = self.counter(counter)
            reached = self.campus.connect(self.head_address, port, self.dn.campus)
            after = self.counter(counter)
            self.lab.check(
                f"a non-member (campus {self.dn.campus}) cannot reach the head's port {port}; "
                f"{counter} counts it",
                not reached and after > before >= 0,
                f"{counter} {before} -> {after}",
            )

    def night_one(self) -> None:
        start, end = self.nights[0]
        self.wait_until(start, "the first night")
        self.power_on_pcs(night=True)

        def running() -> bool:
            return any(s == "RUNNING" for s, _ in self.queue().values())

        ok, _ = self.poll(300, running)
        took = (dt.datetime.now(dt.UTC) - start).total_seconds()
        self.lab.check(
            "the first night: jobs start",
            ok,
            f"first job running {took:.0f}s after the night's start",
        )
        self.lab.phase(f"figure: night start -> first job running: {took:.0f}s")
        # what the night's end changes first: the array done, the long job running
        self.array_done(self.lab.members)
        self.lab.check(
            "the long job is running in the first night",
            self.long_state() == "RUNNING",
            f"{self.queue()}",
        )
        self.wire()
        self.member_refused()
        for check in self.lab.scenario.checks:
            self.lab.run_check(check)
        admin_checks.run_all(self.lab, "formed")
        self.nfs_figures()
        self.lab.evidence()
        self.lab.night_end = end
        self.lab.morning()
        ok, _ = self.poll(240, lambda: self.long_state() == "PENDING")
        took = (dt.datetime.now(dt.UTC) - end).total_seconds()
        at = self.requeued_at()
        self.lab.phase(
            "figure: night end -> long job requeued: "
            + (f"{(at - end).total_seconds():.0f}s (slurmctld's log)" if at else "not in the log")
            + f"; seen pending {took:.0f}s after the end"
        )
        self.lab.check(
            "at the night's end the long job is requeued: squeue on the head shows it pending",
            ok,
            f"{took:.0f}s after the end; {self.queue()}",
        )
        admin_checks.run_all(self.lab, "morning")

    def requeued_at(self) -> dt.datetime | None:
        """When slurmctld requeued the long job, from its journal on the head."""
        out = self.on_head(
            ["journalctl", "-u", "slurmctld", "-o", "short-iso-precise", "--no-pager", "-q"]
        )
        job = re.escape(self.jobs.get("long", "?"))
        # the PC's own `scontrol requeue` at the end, or a node failure's requeue
        found = re.findall(rf"^(\S+) .*requeu.*\bJobId={job}\b", out, re.M | re.I)
        return dt.datetime.fromisoformat(found[-1]) if found else None

    def array_done(self, members: list[str]) -> None:
        array = self.jobs.get("array", "?")

        def done() -> bool:
            return not any(j.startswith(f"{array}_") for j in self.queue())

        ok, took = self.poll(300, done)
        _, listing = self.ssh(f"ls {OUT}")
        outs = re.findall(r"array-\d+\.out", listing)
        self.lab.check(
            f"the array ran in the first night: {self.dn.array} outputs in the home over NFS",
            ok and len(set(outs)) == self.dn.array,
            f"{took:.0f}s; {len(set(outs))} outputs",
        )
        _, cat = self.ssh(f"cat {OUT}/array-*.out")
        hosts = set(re.findall(r" on (\S+) " + self.marker, cat))
        self.lab.check(
            "the array's tasks ran on the lab PCs as the user",
            bool(hosts) and hosts <= set(members) and f"uid {self.uid} " in cat,
            f"hosts {sorted(hosts)}",
        )

    def wire(self) -> None:
        # between the PCs and the head (the campus's refused tries cross the bridge too)
        pcs = " or ".join(f"host {self.lab.cluster.node(n).address}" for n in self.lab.members)
        clear_nfs = self.lab.pcap_text([f"host {self.head_address} and ({pcs}) and tcp port 2049"])
        nfs_packets = len([ln for ln in clear_nfs.splitlines() if ln.strip()])
        marker_clear = self.marker in self.lab.pcap_text(["-A"])
        for name in self.lab.members:
            address = str(self.lab.cluster.node(name).address)
            esp = self.lab.pcap_text([f"host {address} and host {self.head_address} and esp"])
            count = len([ln for ln in esp.splitlines() if "ESP" in ln])
            self.lab.check(
                f"wire: {name} <-> the head is ESP ({count} packets)", count > 0, f"{count}"
            )
        self.lab.check(
            "wire: no NFS in clear between the PCs and the head (tcp 2049), the outputs' "
            "marker never in clear",
            nfs_packets == 0 and not marker_clear,
            f"tcp 2049 packets: {nfs_packets}, marker in clear: {marker_clear}",
        )

    def member_refused(self) -> None:
        name = self.lab.members[0]
        before = self.counter("drop_ssh_member")
        rc, out = self.lab.exec_on(
            name,
            [
                "python3",
                "-c",
                "import socket,sys\ns=socket.socket(); s.settimeout(5)\n"
                "s.connect((sys.argv[1], 22))",
                self.head_address,
            ],
        )
        after = self.counter("drop_ssh_member")
        self.lab.check(
            f"{name} (a member's address) cannot reach the head's sshd; drop_ssh_member counts it",
            rc != 0 and after > before >= 0,
            f"drop_ssh_member {before} -> {after}; {out.strip()[-120:]}",
        )

    def nfs_figures(self) -> None:
        """dd into the home over NFS through ESP, and back (page cache dropped), on a PC; then
        the same on the head over its own loopback, in clear (plain_figure)."""
        name = self.lab.members[0]
        w, r = self.dd(name, f"/home/{self.dn.user}/dd.bin")
        self.lab.phase(f"figure: NFS over ESP from {name}, {DD_MB} MiB: write {w}, read {r}")
        self.plain_figure()

    def dd(self, node: str, path: str) -> tuple[str, str]:
        """Write DD_MB MiB to path as the user (fsync), drop the page cache, read it back;
        the two rates as dd printed them."""
        write = [
            "runuser", "-u", self.dn.user, "--",
            "dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={DD_MB}", "conv=fsync",
        ]  # fmt: skip
        _, wrote = self.lab.exec_on(node, write)
        self.lab.exec_on(node, ["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"])
        _, read = self.lab.exec_on(
            node, ["runuser", "-u", self.dn.user, "--", "dd", f"if={path}", "of=/dev/null", "bs=1M"]
        )
        self.lab.exec_on(node, ["runuser", "-u", self.dn.user, "--", "rm", "-f", path])
        rate = re.compile(r"copied, [0-9.]+ s, ([0-9.]+ [kMG]?B/s)")
        w, r = rate.search(wrote), rate.search(read)
        return (
            w.group(1) if w else wrote.strip()[-80:],
            r.group(1) if r else read.strip()[-80:],
        )

    def plain_figure(self) -> None:
        """NFS in clear, for comparison: the head exports the homes to 127.0.0.1 for the
        measurement, mounts them over its loopback (the firewall accepts lo; no IPsec policy
        covers it) with the PCs' mount options, and runs the same dd. It is the same nfsd on
        the same emulated CPU without ESP; no PC and no bridge take part, so it is the
        ceiling of a plaintext path, not a PC's. The export and the mount are removed after."""
        head = self.dn.head
        try:  # a figure, not a check: its failure is reported and the lab goes on
            rc, out = self.lab.exec_on(head, ["sh", "-c", plain_setup()])
            if rc != 0:
                self.lab.phase(f"figure: NFS in clear not measured: {out.strip()[-200:]}")
            else:
                w, r = self.dd(head, f"{PLAIN_MOUNT}/{self.dn.user}/dd.bin")
                self.lab.phase(
                    f"figure: NFS in clear on the head over loopback, {DD_MB} MiB: "
                    f"write {w}, read {r}"
                )
            self.lab.exec_on(head, ["sh", "-c", plain_teardown()])
        except ChaosError as exc:
            self.lab.phase(f"figure: NFS in clear not measured: {exc}")

    def next_day(self) -> None:
        _, before = self.ssh(f"ls {OUT}")
        self.boot_head(
            "next day: the head's plug pulled, it boots over PXE with the same state disk; "
            "the user logs in again and its host key is the one seen before"
        )
        _, after = self.ssh(f"ls {OUT}")
        self.lab.check(
            "after the power cycle the home is as it was",
            bool(before.split()) and before.split() == after.split(),
            f"{len(after.split())} files",
        )
        ok, _ = self.poll(QUEUE_TIMEOUT, lambda: self.long_state() == "PENDING")
        self.lab.check(
            "after the power cycle the queue is as it was: the long job pending",
            ok,
            f"{self.queue()}",
        )

    def night_two(self) -> None:
        start, end = self.nights[1]
        self.wait_until(start, "the second night")
        self.power_on_pcs(night=True)
        long = self.jobs.get("long", "?")

        def finished() -> bool:
            return long not in self.queue() and "done" in self.ssh(f"cat {OUT}/long.out")[1]

        within = (end - dt.datetime.now(dt.UTC)).total_seconds()
        ok, took = self.poll(within, finished)
        self.lab.check("the second night: the long job completes", ok, f"{took:.0f}s")

    def copy_back(self) -> None:
        local = self.lab.results / "campus" / OUT
        local.mkdir(parents=True, exist_ok=True)
        names = [f"array-{k}.out" for k in range(1, self.dn.array + 1)]
        bad = []
        for k, name in enumerate(names, start=1):
            err = self.campus.scp(
                self.key, self.dn.user, self.head_address, f"{OUT}/{name}", local / name
            )
            text = err if err else (local / name).read_text()
            if not re.fullmatch(rf"task {k} uid {self.uid} on \S+ {self.marker}\n", text):
                bad.append(f"{name}: {text.strip()[:80]}")
        for name in ("long.out", "long.ckpt"):
            err = self.campus.scp(
                self.key, self.dn.user, self.head_address, f"{OUT}/{name}", local / name
            )
            if err:
                bad.append(f"{name}: {err}")
        long_out = (local / "long.out").read_text() if (local / "long.out").exists() else ""
        ckpt = (local / "long.ckpt").read_text() if (local / "long.ckpt").exists() else ""
        if not re.fullmatch(r"long run 1 on \S+\nlong job done in run 1\n", long_out):
            bad.append(f"long.out: {long_out!r}")
        if ckpt != "checkpoint of run 0\ncheckpoint of run 1\n":
            bad.append(f"long.ckpt: {ckpt!r}")
        self.lab.check(
            f"scp from campus: every output ({len(names) + 2} files) copied back, each as its "
            "job wrote it (the long job's rerun output only, its checkpoint from both runs)",
            not bad,
            "; ".join(bad[:5]),
        )


def run(lab: Lab, dn: DayAndNight) -> None:
    flow = Flow(lab, dn)
    flow.campus.up()
    try:
        lab.phase(
            f"day: the head {dn.head} boots; nights "
            + ", ".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in flow.nights)
            + " UTC"
        )
        flow.boot_head(f"{dn.user} logs in to the head from campus {dn.campus} by key")
        flow.day_pcs(flow.power_on_pcs(night=False), "by day")
        flow.submit()
        flow.refusals_by_day()
        flow.night_one()
        flow.next_day()
        flow.night_two()
        flow.copy_back()
    finally:
        flow.campus.down()
