"""The image's own Slurm on the build host: the cached rootfs, read-only under an overlay,
entered by chroot in a network namespace of its own (loopback only, with the head's
address), running the head's rendered slurm.conf, munged and slurmctld. For the tests of
the daytime pending reason and for bench/head.py (500 dynamic nodes, simulated)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from builder.image.context import BuildContext
from builder.image.rootfs import STAMP
from builder.run import spawn, stop_processes

HEAD_ADDRESS = "10.99.0.10"


def rootfs_of(ctx: BuildContext) -> Path | None:
    """The cached rootfs of this cluster's image, if it was built."""
    return ctx.rootfs_dir if (ctx.rootfs_dir / STAMP).exists() else None


class SlurmRoot:
    """munged + slurmctld of the image, with the rendered head's slurm.conf and users."""

    def __init__(
        self,
        rootfs: Path,
        work: Path,
        slurm_conf: str,
        users_conf: str,
        max_nodes: int | None = None,
    ) -> None:
        self.work = work
        self.root = work / "merged"
        self.netns = f"chaos-slurm-{os.getpid()}-{time.monotonic_ns() % 100000}"
        for d in ("upper", "ovl-work", "merged"):
            (work / d).mkdir(parents=True)
        self._sh(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={rootfs},upperdir={work / 'upper'},workdir={work / 'ovl-work'}",
                str(self.root),
            ]
        )
        self._sh(["ip", "netns", "add", self.netns])
        self._sh(["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"])
        self._sh(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                "ip",
                "addr",
                "add",
                f"{HEAD_ADDRESS}/32",
                "dev",
                "lo",
            ]
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.state = "/var/lib/slurm/slurmctld"
        conf = []
        for line in slurm_conf.splitlines():
            key = line.partition("=")[0]
            if key == "SlurmctldHost":  # slurmctld runs only where gethostname() says so
                line = f"SlurmctldHost={socket.gethostname()}({HEAD_ADDRESS})"
            elif key == "StateSaveLocation":
                line = f"StateSaveLocation={self.state}"
            elif key == "MaxNodeCount" and max_nodes is not None:
                line = f"MaxNodeCount={max_nodes}"
            conf.append(line)
        (self.root / "etc/slurm").mkdir(parents=True, exist_ok=True)
        (self.root / "etc/slurm/slurm.conf").write_text("\n".join(conf) + "\n")
        (self.root / "etc/chaos").mkdir(parents=True, exist_ok=True)
        (self.root / "etc/chaos/users.conf").write_text(users_conf)
        self.chroot(["systemd-sysusers", "/etc/chaos/users.conf"])
        # a munge key made here for this run (the cluster's comes from enrollment)
        self.chroot(["mungekey", "--create", "--force", "--keyfile", "/etc/munge/munge.key"])
        for rel, owner in (
            ("etc/munge/munge.key", "munge"),
            ("run/munge", "munge"),
            ("var/lib/munge", "munge"),
            ("var/log/munge", "munge"),
            (self.state.lstrip("/"), "slurm"),
            ("var/log/slurm", "slurm"),
        ):
            path = self.root / rel
            if not path.exists():
                path.mkdir(parents=True)
            self.chroot(["chown", "-R", f"{owner}:{owner}", f"/{rel}"])
        self.chroot(["chmod", "0400", "/etc/munge/munge.key"])
        self.procs.append(
            spawn(
                self._in(["/usr/sbin/munged", "--foreground", "--force"], "munge"),
                log_file=work / "munged.log",
            )
        )
        self._wait_for(self.root / "run/munge/munge.socket.2", "munged")
        self.procs.append(
            spawn(self._in(["/usr/sbin/slurmctld", "-D", "-i"]), log_file=work / "slurmctld.log")
        )
        deadline = time.monotonic() + 60
        while self.chroot(["scontrol", "ping"], check=False).returncode != 0:
            if time.monotonic() > deadline or self.procs[-1].poll() is not None:
                raise RuntimeError(
                    "slurmctld did not answer: " + (work / "slurmctld.log").read_text()[-2000:]
                )
            time.sleep(0.5)

    @property
    def slurmctld_pid(self) -> int:
        return self.procs[-1].pid

    def _in(self, argv: Sequence[str], user: str | None = None) -> list[str]:
        spec = [f"--userspec={user}:{user}"] if user else []
        return ["ip", "netns", "exec", self.netns, "chroot", *spec, str(self.root), *argv]

    def chroot(
        self,
        argv: Sequence[str],
        user: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """argv inside the image (as user), in the namespace."""
        result = subprocess.run(
            self._in(argv, user),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})},
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr}")
        return result

    def runner(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """A chaosnode Run: what chaos-slurm would run on the head."""
        return self.chroot(argv, check=False)

    def _wait_for(self, path: Path, what: str) -> None:
        deadline = time.monotonic() + 30
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.2)

    @staticmethod
    def _sh(argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    def close(self) -> None:
        stop_processes(self.procs)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, check=False)
        subprocess.run(["umount", str(self.root)], capture_output=True, check=False)
        shutil.rmtree(self.work, ignore_errors=True)
