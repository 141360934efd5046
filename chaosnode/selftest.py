"""Report on the console, in one line, whether this node came up as a cluster member.

CHAOS-READY node=NAME addr=ADDR nft=ok enroll=ok charon=ok tyd=ok disks=none
CHAOS-FAILED node=NAME addr=ADDR nft=ok enroll=waiting charon=waiting tyd=waiting disks=none

enroll=waiting: no certificate yet (no enrollment service reachable, or this machine's TPM
is not registered and waits for an admin's approval); charon and tyd wait for it.

With chaos.selftest=1 on the kernel command line the machine powers off afterwards.

    python3 -I -m chaosnode.selftest
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from chaosnode import paths
from chaosnode.console import console
from chaosnode.contract.night import NightSettings

SETTLE_SECONDS = 90
# A registered node enrolls in seconds; one that has not by then waits for an enrollment
# service or an admin's approval, and charon and tyd wait with it: report that, do not hang.
ENROLL_WAIT_SECONDS = 45
WAITS_FOR_ENROLLMENT = ("charon", "tyd")
ADDRESS_WAIT_SECONDS = 30
UNITS = {
    "nft": "nftables.service",
    "enroll": "chaos-enroll.service",
    "charon": "strongswan.service",
    "tyd": "tyd.service",
}
RAM_BLOCK = ("loop", "ram", "zram")


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def unit_state(unit: str) -> tuple[str, str, bool]:
    """LoadState, ActiveState and whether a start job is still queued (waiting on another)."""
    out = sh("systemctl", "show", "--property=LoadState,ActiveState,Job", unit).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return props.get("LoadState", ""), props.get("ActiveState", ""), bool(props.get("Job"))


def settled(active: str, queued: bool) -> bool:
    return not queued and active not in ("activating", "reloading", "deactivating")


def settled_state(unit: str, deadline: float) -> tuple[str, str]:
    while True:
        load, active, queued = unit_state(unit)
        if time.monotonic() > deadline and not settled(active, queued):
            return load, "waiting"
        if settled(active, queued):
            return load, active
        time.sleep(0.5)


def check_unit(field: str, deadline: float) -> str:
    load, active = settled_state(UNITS[field], deadline)
    if load == "not-found":
        return "missing"
    if active != "active":
        return active or "failed"
    if field == "nft":
        return "ok" if sh("nft", "list", "tables").stdout.strip() else "empty"
    if field == "charon":
        return "ok" if sh("swanctl", "--stats").returncode == 0 else "novici"
    return "ok"


def configured_address(address: str, deadline: float) -> str:
    while True:
        out = sh("ip", "-o", "-4", "addr", "show").stdout
        if any(f" {address}/" in line for line in out.splitlines()):
            return address
        if time.monotonic() > deadline:
            return "none"
        time.sleep(0.5)


def disks() -> str:
    names = sorted(
        d.name for d in Path("/sys/class/block").iterdir() if not d.name.startswith(RAM_BLOCK)
    )
    return ",".join(names) or "none"


def always_on(night_json: Path) -> bool:
    """Whether this node is the always-on head (its night.json says so): the one node that
    sees its disks (its state disk)."""
    try:
        return NightSettings.loads(night_json.read_text()).always_on
    except (OSError, ValueError, KeyError):
        return False


def verdict(node: dict[str, str], fields: dict[str, str], head: bool = False) -> str:
    """The one console line: READY only when every part is up and no disk is visible (but
    on the always-on head, whose state disk is its own)."""
    ready = (
        bool(node)
        and fields["addr"] != "none"
        and (fields["disks"] == "none" or head)
        and all(fields[f] == "ok" for f in UNITS)
    )
    return ("CHAOS-READY " if ready else "CHAOS-FAILED ") + " ".join(
        f"{k}={v}" for k, v in fields.items()
    )


def main() -> int:
    node_json = Path(paths.NODE_JSON)
    node = json.loads(node_json.read_text()) if node_json.exists() else {}
    deadline = time.monotonic() + SETTLE_SECONDS
    fields = {"node": node.get("name", "unknown")}
    fields["addr"] = (
        configured_address(node["address"], time.monotonic() + ADDRESS_WAIT_SECONDS)
        if node
        else "none"
    )
    start = time.monotonic()
    for field in UNITS:
        if field == "enroll":
            fields[field] = check_unit(field, min(deadline, start + ENROLL_WAIT_SECONDS))
        elif field in WAITS_FOR_ENROLLMENT and fields["enroll"] == "waiting":
            fields[field] = "waiting"
        else:
            fields[field] = check_unit(field, deadline)
    fields["disks"] = disks()
    console(verdict(node, fields, always_on(Path(paths.NIGHT_JSON))))
    if "chaos.selftest=1" in Path("/proc/cmdline").read_text().split():
        os.sync()
        sh("systemctl", "poweroff", "--no-block")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
