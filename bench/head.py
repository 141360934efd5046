#!/usr/bin/env python3
"""The always-on head's Slurm at lab scale: the image's own slurmctld (the cached rootfs,
in a chroot and a network namespace of its own, the golden head's slurm.conf), with N
dynamic nodes and J pending jobs.

    python3 bench/head.py [--nodes 500] [--arrays 50] [--array-size 20]   (as root; needs a
    built image's rootfs in $CHAOS_IMAGE_CACHE, default /var/tmp/chaos-image-cache)

Prints: slurmctld's resident memory and CPU seconds idle, after N nodes were created
(`scontrol create ... State=FUTURE`: simulated, they run no slurmd and send no heartbeat),
and after J array jobs were submitted; the time of sinfo and squeue; the time of one round
of the daytime pending reason (chaosnode.daytime.step) over every pending job.

Not measured here (they need the QEMU lab): time from the night's start to the first job,
NFS over ESP against plaintext, requeue at the night's end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "head")]

from slurmroot import SlurmRoot, rootfs_of  # noqa: E402

from builder.config import load_cluster  # noqa: E402
from builder.image.context import BuildContext  # noqa: E402
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
        slurm = SlurmRoot(
            rootfs,
            Path(tmp) / "slurm",
            (GOLDEN / "etc/slurm/slurm.conf").read_text(),
            (GOLDEN / "etc/chaos/users.conf").read_text(),
            max_nodes=args.nodes + 10,
        )
        try:
            return measure(slurm, args)
        finally:
            slurm.close()


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
