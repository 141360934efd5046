#!/usr/bin/env python3
"""The always-on head's Slurm at lab scale: the image's own slurmctld (the cached rootfs,
in a chroot and a network namespace of its own, the golden head's slurm.conf), with N
dynamic nodes and J pending jobs.

    python3 bench/head.py [--nodes 500] [--arrays 50] [--array-size 20]   (as root; needs a
    built image's rootfs in $CHAOS_IMAGE_CACHE, default /var/tmp/chaos-image-cache)
    python3 bench/head.py --register 500 [--batch 50]

Prints: slurmctld's resident memory and CPU seconds idle, after N nodes were created
(`scontrol create ... State=FUTURE`: simulated, they run no slurmd and send no heartbeat),
and after J array jobs were submitted; the time of sinfo and squeue; the time of one round
of the daytime pending reason (chaosnode.daytime.step) over every pending job.

With --register N: N real slurmd of the image register as dynamic nodes (`slurmd -Z`,
configless, munge), each in a network and UTS namespace of its own (its own address and
host name, on a bridge to the head's namespace) and with a private /var/lib/slurm, started
`--batch` at a time as a lab's PCs boot at 17:00. Prints the seconds until every node is
idle in sinfo, the registrations per second, slurmctld's memory and CPU with N registered
nodes and over 30 s of their pings, and one slurmd's memory.

Not measured here (they need the QEMU lab): time from the night's start to the first job,
NFS over ESP against plaintext, requeue at the night's end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "head")]

from slurmroot import HEAD_ADDRESS, SlurmRoot, rootfs_of  # noqa: E402

from builder.config import load_cluster  # noqa: E402
from builder.image.context import BuildContext  # noqa: E402
from builder.run import spawn, stop_processes  # noqa: E402
from chaosnode import daytime  # noqa: E402
from chaosnode.window import night_from_settings  # noqa: E402

GOLDEN = ROOT / "tests/golden/head/head"
TICKS = os.sysconf("SC_CLK_TCK")


def usage(pid: int) -> tuple[float, float]:
    """(resident MiB, CPU seconds) of a process."""
    rss = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return rss / 1024, (int(fields[11]) + int(fields[12])) / TICKS


def timed(what: str, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"  {what:<48} {seconds:8.3f} s")
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--arrays", type=int, default=50)
    p.add_argument("--array-size", type=int, default=20)
    p.add_argument("--register", type=int, default=0, metavar="N", help="N real slurmd -Z")
    p.add_argument("--batch", type=int, default=50, help="slurmd started at once (--register)")
    args = p.parse_args()
    cache = Path(os.environ.get("CHAOS_IMAGE_CACHE", "/var/tmp/chaos-image-cache"))
    cluster = load_cluster(ROOT / "tests/golden/head.yaml")[0]
    with tempfile.TemporaryDirectory(prefix="chaos-bench-head-") as tmp:
        ctx = BuildContext(
            cluster=cluster, nodes_dir=Path(tmp), out_dir=Path(tmp) / "out", cache_dir=cache
        )
        rootfs = rootfs_of(ctx)
        if rootfs is None:
            print(f"no built rootfs in {cache}: run an image build first", file=sys.stderr)
            return 1
        conf = (GOLDEN / "etc/slurm/slurm.conf").read_text()
        if args.register:  # every slurmd keeps its pid file in its own private /var/lib/slurm
            conf += "SlurmdPidFile=/var/lib/slurm/slurmd.pid\n"
        slurm = SlurmRoot(
            rootfs,
            Path(tmp) / "slurm",
            conf,
            (GOLDEN / "etc/chaos/users.conf").read_text(),
            max_nodes=max(args.nodes, args.register) + 10,
        )
        try:
            return register(slurm, args) if args.register else measure(slurm, args)
        finally:
            slurm.close()


BRIDGE = "chaosbr"
NODE_NET = "10.98"  # the simulated PCs' subnet, /16, on a bridge in the head's namespace


def node_address(i: int) -> str:
    return f"{NODE_NET}.{1 + i // 250}.{1 + i % 250}"


class Registrants:
    """N real slurmd of the image, each in its own network and UTS namespace."""

    def __init__(self, slurm: SlurmRoot, count: int) -> None:
        self.slurm = slurm
        self.count = count
        self.prefix = f"cr{os.getpid() % 10000}"
        self.procs: list[subprocess.Popen[bytes]] = []
        head = ["ip", "-n", slurm.netns]
        subprocess.run([*head, "link", "add", BRIDGE, "type", "bridge"], check=True)
        subprocess.run([*head, "addr", "add", f"{NODE_NET}.0.1/16", "dev", BRIDGE], check=True)
        subprocess.run([*head, "link", "set", BRIDGE, "up"], check=True)
        lines = []
        for i in range(count):
            ns, veth = f"{self.prefix}-{i}", f"{self.prefix}v{i}"
            lines += [
                f"netns add {ns}",
                f"link add {veth} type veth peer name eth0 netns {ns}",
                f"link set {veth} netns {slurm.netns}",
            ]
        subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", text=True, check=True)
        inside = []
        for i in range(count):
            inside += [f"link set {self.prefix}v{i} master {BRIDGE} up"]
        subprocess.run(
            [*head, "-batch", "-"], input="\n".join(inside) + "\n", text=True, check=True
        )
        for i in range(count):
            node = ["ip", "-n", f"{self.prefix}-{i}"]
            subprocess.run([*node, "link", "set", "lo", "up"], check=True)
            subprocess.run(
                [*node, "addr", "add", f"{node_address(i)}/16", "dev", "eth0"], check=True
            )
            subprocess.run([*node, "link", "set", "eth0", "up"], check=True)
            subprocess.run([*node, "route", "add", "default", "via", f"{NODE_NET}.0.1"], check=True)

    def start(self, i: int) -> None:
        root = self.slurm.root
        # a private /var/lib/slurm (spool, pid file); /proc and the host's /sys (with its
        # cgroup v1 hierarchies, which this host has) inside the chroot; then the PC's
        # network namespace
        script = (
            f"hostname sim{i:04d} && mount -t tmpfs -o mode=0755 tmpfs {root}/var/lib/slurm && "
            f"mount -t proc proc {root}/proc && mount --rbind /sys {root}/sys && "
            f"exec ip netns exec {self.prefix}-{i} chroot {root} /usr/sbin/slurmd -D -Z "
            f'--conf-server {HEAD_ADDRESS} --conf "RealMemory=7800"'
        )
        argv = ["unshare", "--uts", "--mount", "sh", "-c", script]
        self.procs.append(spawn(argv, log_file=self.slurm.work / f"slurmd-{i}.log"))

    def close(self) -> None:
        stop_processes(self.procs)
        lines = "".join(f"netns delete {self.prefix}-{i}\n" for i in range(self.count))
        subprocess.run(["ip", "-force", "-batch", "-"], input=lines, text=True, check=False)


def idle_nodes(slurm: SlurmRoot) -> int:
    out = slurm.chroot(["sinfo", "-h", "-N", "-t", "idle", "-o", "%N"], check=False).stdout
    return len(out.split())


def register(slurm: SlurmRoot, args: argparse.Namespace) -> int:
    pid = slurm.slurmctld_pid
    time.sleep(2)
    rss, cpu0 = usage(pid)
    print(f"slurmctld idle, no node:                 {rss:7.1f} MiB  {cpu0:6.2f} s CPU")
    setup = time.perf_counter()
    nodes = Registrants(slurm, args.register)
    print(f"  {args.register} namespaces on a bridge  {time.perf_counter() - setup:8.1f} s")
    try:
        start = time.perf_counter()
        for i in range(args.register):
            nodes.start(i)
            if (i + 1) % args.batch == 0:
                print(
                    f"  started {i + 1:4d} slurmd at {time.perf_counter() - start:6.1f} s, "
                    f"{idle_nodes(slurm)} idle",
                    flush=True,
                )
        deadline = start + 600
        while (idle := idle_nodes(slurm)) < args.register and time.perf_counter() < deadline:
            time.sleep(1)
        seconds = time.perf_counter() - start
        print(
            f"{idle} of {args.register} dynamic nodes idle after {seconds:.1f} s "
            f"({idle / seconds:.1f} registrations/s)"
        )
        rss, cpu = usage(pid)
        print(
            f"slurmctld with {idle} registered nodes:   {rss:7.1f} MiB  {cpu - cpu0:6.2f} s CPU "
            "since start"
        )
        before = usage(pid)[1]
        time.sleep(30)
        print(f"slurmctld CPU over 30 s of {idle} nodes' pings: {usage(pid)[1] - before:.2f} s")
        shell = nodes.procs[0].pid
        kids = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        one = int(kids[0]) if kids else shell
        print(f"one slurmd: {usage(one)[0]:.1f} MiB resident")
        return 0 if idle == args.register else 1
    finally:
        nodes.close()


def measure(slurm: SlurmRoot, args: argparse.Namespace) -> int:
    pid = slurm.slurmctld_pid
    time.sleep(2)
    rss, cpu = usage(pid)
    print(f"slurmctld idle, no node:                 {rss:7.1f} MiB  {cpu:6.2f} s CPU")
    width = len(str(args.nodes))
    names = f"sim[{1:0{width}d}-{args.nodes:0{width}d}]"
    timed(
        f"scontrol create {args.nodes} dynamic nodes",
        lambda: slurm.chroot(
            ["scontrol", "create", f"nodename={names}", "cpus=4", "realmemory=7800", "state=future"]
        ),
    )
    time.sleep(2)
    rss, cpu = usage(pid)
    print(f"slurmctld with {args.nodes} nodes:              {rss:7.1f} MiB  {cpu:6.2f} s CPU")

    def submit() -> None:
        for _ in range(args.arrays):
            slurm.chroot(["sbatch", f"--array=1-{args.array_size}", "--wrap", "true"], user="alice")

    jobs = args.arrays * args.array_size
    timed(f"sbatch {args.arrays} arrays of {args.array_size} ({jobs} jobs)", submit)
    time.sleep(2)
    rss, cpu = usage(pid)
    print(f"slurmctld with {args.nodes} nodes, {jobs} jobs:  {rss:7.1f} MiB  {cpu:6.2f} s CPU")
    timed("sinfo", lambda: slurm.chroot(["sinfo"]))
    timed("squeue (every job)", lambda: slurm.chroot(["squeue", "--array"]))
    night = night_from_settings(("17:00-09:00",), "Europe/Berlin", (), ())
    day = dt.datetime(2026, 12, 2, 11, 0, tzinfo=dt.UTC)
    timed(
        f"daytime reason, first round ({args.arrays} arrays)",
        lambda: daytime.step(slurm.runner, night, day),
    )
    timed(
        "daytime reason, a round with nothing to do", lambda: daytime.step(slurm.runner, night, day)
    )
    before = usage(pid)[1]
    time.sleep(30)
    print(f"slurmctld CPU over 30 s idle with all that: {usage(pid)[1] - before:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
