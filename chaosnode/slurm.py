"""chaos-slurm.service: Slurm follows tyd's map.

On every node of a cluster with a Slurm workload (etc/chaos/slurm.json, rendered): once
enrollment has brought the cluster's munge key (tmpfs), start munged; on the head, start
slurmctld; on a compute node, start slurmd (a dynamic node, `slurmd -Z`, configless) as soon
as tyd's map lists the head, so it registers with a controller it can reach through IPsec.
Then, on the head, remove from Slurm every node tyd removed (powered off, crashed, left):
`scontrol delete`, or `down` while it still holds a job (and delete it on a later round).
Only nodes that were in tyd's map and left it are removed; a node that comes back registers
again by itself. On the always-on head, by day, pending jobs say why (chaosnode.daytime).

    python3 -I -m chaosnode.slurm [--settings /etc/chaos/slurm.json] [--once]

Stdlib only: this runs on the nodes under Debian's python3.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from chaosnode import console, paths
from chaosnode.contract.night import NightSettings
from chaosnode.contract.slurm import SlurmSettings
from chaosnode.daytime import step as daytime_step
from chaosnode.window import Night

POLL_SECONDS: Final = 2.0
LIVE: Final = ("alive", "suspect")  # tyd's states of a member that is still in the cluster
MAX_MAP_BYTES: Final = 16 << 20
REASON: Final = "left the cluster (tyd removed it)"

# The image's files are all root-owned (its cpio is packed --owner=0:0): give munged and
# slurmctld back the directories their packages made for them, before they start.
STATE_DIRS: Final = (
    ("/var/lib/munge", "munge", 0o711),
    ("/var/log/munge", "munge", 0o700),
    ("/var/lib/slurm/slurmctld", "slurm", 0o755),
    ("/var/log/slurm", "slurm", 0o755),
)

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class SlurmSetupError(Exception):
    """slurm.json is missing or not what chaos-build renders."""


def load_settings(path: Path) -> SlurmSettings:
    try:
        return SlurmSettings.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SlurmSetupError(f"{path}: {exc}") from None


def live_members(doc: Any) -> set[str]:
    """Names of the members tyd's map (its JSON export) has as alive or suspect."""
    members = doc.get("members") if isinstance(doc, dict) else None
    if not isinstance(members, list):
        return set()
    return {
        m["name"]
        for m in members
        if isinstance(m, dict) and isinstance(m.get("name"), str) and m.get("state") in LIVE
    }


def read_map(path: Path) -> set[str] | None:
    """The live members of tyd's map, or None while there is no (whole) map yet."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MAP_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_MAP_BYTES:
        return None
    try:
        return live_members(json.loads(data))
    except ValueError:
        return None


def slurm_nodes(scontrol_oneliner: str) -> dict[str, str]:
    """{node name: state} from `scontrol show nodes --oneliner`."""
    nodes = {}
    for line in scontrol_oneliner.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "NodeName" in fields:
            nodes[fields["NodeName"]] = fields.get("State", "")
    return nodes


def departed(seen: set[str], live: set[str], in_slurm: Iterable[str]) -> list[str]:
    """Slurm nodes that were in tyd's map and are not any more: what the head removes."""
    return sorted(n for n in in_slurm if n in seen and n not in live)


def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


say = functools.partial(console.say, program="chaos-slurm")


class Follower:
    """The head's side: Slurm's node list follows tyd's map."""

    def __init__(self, settings: SlurmSettings, runner: Run = run) -> None:
        self.settings = settings
        self.run = runner
        self.seen: set[str] = set()
        self.downed: set[str] = set()

    def step(self, live: set[str]) -> list[str]:
        """One round; returns the nodes removed from Slurm in it."""
        self.seen |= live
        shown = self.run(["scontrol", "show", "nodes", "--oneliner"])
        if shown.returncode != 0:
            return []
        removed = []
        for name in departed(self.seen, live, slurm_nodes(shown.stdout)):
            if self.run(["scontrol", "delete", f"nodename={name}"]).returncode == 0:
                say(f"{name} left tyd's map: deleted from Slurm")
                self.downed.discard(name)
                removed.append(name)
            elif name not in self.downed:
                self.run(
                    ["scontrol", "update", f"nodename={name}", "state=down", f"reason={REASON}"]
                )
                say(f"{name} left tyd's map: down in Slurm (deleted once its jobs are gone)")
                self.downed.add(name)
        return removed


def head_daytime(night_json: Path) -> Night | None:
    """On the always-on head with a night: its night, for the daytime pending reason."""
    try:
        night = NightSettings.loads(night_json.read_text())
    except (OSError, ValueError):
        return None
    return night.night() if night.always_on and night.enabled else None


def own_state_dirs(root: Path = Path("/")) -> None:
    for rel, user, mode in STATE_DIRS:
        path = root / rel.lstrip("/")
        entry = pwd.getpwnam(user)
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(mode)


def start(unit: str, runner: Run) -> bool:
    result = runner(["systemctl", "start", unit])
    if result.returncode != 0:
        say(f"systemctl start {unit} failed: {result.stderr.strip()[-300:]}")
    return result.returncode == 0


def wait_for(what: Callable[[], bool], sleep: Callable[[float], None]) -> None:
    while not what():
        sleep(POLL_SECONDS)


def main(
    argv: Sequence[str] | None = None,
    runner: Run = run,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    p = argparse.ArgumentParser(prog="python3 -m chaosnode.slurm", description=__doc__)
    p.add_argument("--settings", type=Path, default=Path(paths.SLURM_JSON))
    p.add_argument("--once", action="store_true", help="start the daemons, one round, exit")
    args = p.parse_args(argv)
    try:
        s = load_settings(args.settings)
    except SlurmSetupError as exc:
        say(str(exc))
        return 2
    if not Path(s.munge_key).exists():
        say(
            f"no munge key at {s.munge_key}: enrollment brought none (is the enrollment "
            "service of this build running?); Slurm stays off"
        )
        return 1
    try:
        own_state_dirs()
    except (KeyError, OSError) as exc:
        say(f"cannot prepare the state directories of munge and Slurm: {exc}")
        return 1
    if not start("munge.service", runner):
        return 1
    if s.slurmctld and not start("slurmctld.service", runner):
        return 1
    if s.slurmd:
        say(f"waiting for the head {s.head} in tyd's map")
        wait_for(lambda: s.head in (read_map(Path(s.tyd_map)) or set()), sleep)
        if not start("slurmd.service", runner):
            return 1
        say(f"slurmd started: a dynamic node of {s.head} ({s.head_address})")
    if not s.slurmctld:
        return 0
    follower = Follower(s, runner)
    daytime = head_daytime(Path(paths.NIGHT_JSON))
    while True:
        live = read_map(Path(s.tyd_map))
        if live is not None:
            follower.step(live)
        if daytime is not None:
            daytime_step(runner, daytime, dt.datetime.now(dt.UTC))
        if args.once:
            return 0
        sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
