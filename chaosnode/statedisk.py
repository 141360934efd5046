"""chaos-statedisk.service: the always-on head's state disk, and the guard in front of it.

chaos formats the disk chaos.yaml names (nodes[].state_disk) only when it is blank (no
signature that `blkid -p` or `wipefs -n` finds, and nothing but zeros in its first and last
MiB) or keeps it when it already carries chaos's own filesystem (ext4 labelled chaos-state).
Anything else, another filesystem or a partition table, is someone's data: refused, with what
was found, on the console; the head then runs without homes and Slurm state rather than
destroy a disk. Every other node never gets here (only the head has statedisk.json) and keeps
its disks untouched (the image ships no storage drivers for them).

    python3 -I -m chaosnode.statedisk [--settings /etc/chaos/statedisk.json] [--check]

Stdlib only: this runs on the nodes under Debian's python3.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from chaosnode import paths

MIB: Final = 1 << 20
FS_TYPE: Final = "ext4"

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class StateDiskError(Exception):
    """The state disk cannot be used: not found, refused, or a tool failed."""


class Verdict(enum.Enum):
    BLANK = "blank"  # chaos may format it
    OURS = "ours"  # chaos's own filesystem: kept as it is
    FOREIGN = "foreign"  # someone's data: never touched


@dataclass(frozen=True)
class Inspection:
    device: str
    verdict: Verdict
    found: str  # what was found, for the console

    def describe(self) -> str:
        return f"{self.device}: {self.found}"


@dataclass(frozen=True)
class Settings:
    disk: str  # /dev/disk/by-id/... or LABEL=...
    label: str
    mount: Path
    home: Path
    slurmctld: Path
    ssh: Path
    users: tuple[tuple[str, int, int], ...]  # name, uid, gid


def load_settings(path: Path) -> Settings:
    try:
        doc = json.loads(path.read_text())
        users = tuple((str(u["name"]), int(u["uid"]), int(u["gid"])) for u in doc["users"])
        return Settings(
            disk=str(doc["disk"]),
            label=str(doc["label"]),
            mount=Path(doc["mount"]),
            home=Path(doc["home"]),
            slurmctld=Path(doc["slurmctld"]),
            ssh=Path(doc["ssh"]),
            users=users,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateDiskError(f"{path}: {exc}") from None


def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300, check=False)


def say(message: str) -> None:
    print(f"chaos-statedisk: {message}", flush=True)


# udev names the disk a while after this unit may start (its driver is loaded on demand):
# seen under TCG: virtio_blk named vda about a second after chaos-statedisk had looked.
DEVICE_WAIT_SECONDS: Final = 60.0


def wait_for_disk(
    disk: str,
    runner: Run = run,
    timeout: float = DEVICE_WAIT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """resolve(), retried until the disk appears or timeout seconds have passed."""
    deadline = clock() + timeout
    while True:
        try:
            return resolve(disk, runner)
        except StateDiskError:
            if clock() >= deadline:
                raise
            sleep(1.0)


def resolve(disk: str, runner: Run = run) -> str:
    """The device node of a by-id path or LABEL=NAME."""
    if disk.startswith("LABEL="):
        r = runner(["blkid", "-L", disk.removeprefix("LABEL=")])
        if r.returncode != 0 or not r.stdout.strip():
            raise StateDiskError(
                f"no disk with {disk}: a blank disk has no label yet; name it "
                "by /dev/disk/by-id/ in chaos.yaml"
            )
        return r.stdout.strip()
    device = Path(disk)
    if not device.exists():
        raise StateDiskError(
            f"{disk} does not exist on this machine; see ls -l "
            "/dev/disk/by-id/ on the head and fix nodes[].state_disk"
        )
    return str(device.resolve())


def probe(device: str, runner: Run = run) -> dict[str, str]:
    """blkid's low-level probe (superblocks and partition tables): {} when it finds none."""
    r = runner(["blkid", "-p", "-o", "export", device])
    if r.returncode == 2:  # nothing found
        return {}
    if r.returncode != 0:
        raise StateDiskError(f"blkid -p {device} failed: {r.stderr.strip()[-300:]}")
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def signatures(device: str, runner: Run = run) -> list[str]:
    """Every signature wipefs knows of (it also sees ones blkid reports only one of)."""
    r = runner(["wipefs", "-n", "--noheadings", "--output", "TYPE,OFFSET", device])
    if r.returncode != 0:
        raise StateDiskError(f"wipefs -n {device} failed: {r.stderr.strip()[-300:]}")
    return [" at ".join(line.split()) for line in r.stdout.splitlines() if line.strip()]


def zero_ends(device: str) -> bool:
    """Nothing but zeros in the first and the last MiB."""
    with open(device, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        for offset in (0, max(size - MIB, 0)):
            f.seek(offset)
            if f.read(MIB).strip(b"\0"):
                return False
    return True


def inspect(device: str, label: str, runner: Run = run) -> Inspection:
    found = probe(device, runner)
    sigs = signatures(device, runner)
    if found.get("PTTYPE"):
        return Inspection(device, Verdict.FOREIGN, f"a {found['PTTYPE']} partition table")
    kind = found.get("TYPE")
    if kind == FS_TYPE and found.get("LABEL") == label and all(s.startswith(FS_TYPE) for s in sigs):
        return Inspection(device, Verdict.OURS, f"chaos's own {FS_TYPE} ({label})")
    if kind:
        named = f" labelled {found['LABEL']!r}" if found.get("LABEL") else ""
        return Inspection(device, Verdict.FOREIGN, f"a {kind} filesystem{named}")
    if sigs:
        return Inspection(device, Verdict.FOREIGN, f"signatures {', '.join(sigs)}")
    if not zero_ends(device):
        return Inspection(
            device, Verdict.FOREIGN, "no known signature, but data in its first or last MiB"
        )
    return Inspection(device, Verdict.BLANK, "blank (zeros, no signature)")


def ensure_filesystem(device: str, label: str, runner: Run = run) -> Inspection:
    """Format a blank disk, keep chaos's own, refuse anything else (StateDiskError)."""
    seen = inspect(device, label, runner)
    if seen.verdict is Verdict.FOREIGN:
        raise StateDiskError(
            f"refusing {seen.describe()}: chaos formats only a blank disk or "
            f"its own ({FS_TYPE} labelled {label}); this one holds data. "
            "Wipe it yourself if it is really free (wipefs -a), or name "
            "another disk in nodes[].state_disk"
        )
    if seen.verdict is Verdict.BLANK:
        r = runner(["mkfs.ext4", "-q", "-L", label, "-m", "0", device])
        if r.returncode != 0:
            raise StateDiskError(f"mkfs.ext4 {device} failed: {r.stderr.strip()[-300:]}")
    return seen


def prepare_tree(s: Settings, slurm_owner: tuple[int, int] | None) -> None:
    """The directories chaos keeps on the mounted disk: homes (one per user), Slurm, ssh."""
    for path, mode in ((s.home, 0o755), (s.slurmctld, 0o700), (s.ssh, 0o700)):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
    if slurm_owner is not None:
        os.chown(s.slurmctld, *slurm_owner)
    for name, uid, gid in s.users:
        home = s.home / name
        if not home.exists():
            home.mkdir(mode=0o700)
            os.chown(home, uid, gid)


HOST_KEY: Final = "ssh_host_ed25519_key"


def ensure_host_key(ssh: Path, runner: Run = run) -> bool:
    """The head's sshd host key, made once on the state disk (the image has none): the same
    key after every restart, so users' known_hosts stay valid. True when it was made now."""
    key = ssh / HOST_KEY
    if key.exists():
        return False
    r = runner(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "chaos head", "-f", str(key)])
    if r.returncode != 0:
        raise StateDiskError(f"ssh-keygen for {key} failed: {r.stderr.strip()[-300:]}")
    key.chmod(0o600)
    return True


def mount(runner: Run, argv: list[str]) -> None:
    r = runner(argv)
    if r.returncode != 0:
        raise StateDiskError(f"{' '.join(argv)} failed: {r.stderr.strip()[-300:]}")


def main(argv: Sequence[str] | None = None, runner: Run = run) -> int:
    p = argparse.ArgumentParser(prog="python3 -m chaosnode.statedisk", description=__doc__)
    p.add_argument("--settings", type=Path, default=Path(paths.STATE_DISK_JSON))
    p.add_argument("--check", action="store_true", help="say what the guard finds; change nothing")
    args = p.parse_args(argv)
    try:
        s = load_settings(args.settings)
        device = wait_for_disk(s.disk, runner)
        if args.check:
            say(inspect(device, s.label, runner).describe())
            return 0
        seen = ensure_filesystem(device, s.label, runner)
        say(f"{device}: {'formatted' if seen.verdict is Verdict.BLANK else 'kept'} ({seen.found})")
        s.mount.mkdir(parents=True, exist_ok=True)
        mount(runner, ["mount", "-t", FS_TYPE, "-o", "nodev,nosuid", device, str(s.mount)])
        prepare_tree(s, _slurm_owner())
        if ensure_host_key(s.ssh, runner):
            say(f"made the ssh host key {s.ssh / HOST_KEY}")
        mount(runner, ["mount", "--bind", str(s.home), paths.HOME])
    except StateDiskError as exc:
        say(str(exc))
        return 1
    say(f"state on {s.mount}: homes, Slurm's state and the ssh host key survive a restart")
    return 0


def _slurm_owner() -> tuple[int, int] | None:
    try:  # the head has the slurm account; a test host may not
        entry = pwd.getpwnam("slurm")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


if __name__ == "__main__":
    sys.exit(main())
