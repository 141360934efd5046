"""Pick this machine's public node settings by the MAC of one of its NICs and apply them.

A shared ISO carries every node's rendered overlay (public files only: addresses, firewall,
IPsec policy, the cluster CA) under /usr/lib/chaos/nodes/<name>/. The one whose
etc/chaos/node.json names a MAC of this machine is copied over /; the rest are deleted from
RAM. A MAC picks settings, never trust: the node's identity comes from enrollment. A machine
whose MAC is in no overlay boots on, says so on the console and gets no cluster settings.

    python3 -I -m chaosnode.identity
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

from chaosnode import paths
from chaosnode.console import console
from chaosnode.contract.node import NodeSettings

NIC_WAIT_SECONDS = 30


def overlays(bundle: Path) -> dict[str, Path]:
    """{mac: overlay root} for every node overlay in the bundle."""
    by_mac = {}
    for node_json in sorted(bundle.glob(f"*/{paths.in_root(paths.NODE_JSON)}")):
        node = NodeSettings.loads(node_json.read_text())
        by_mac[node.mac.lower()] = node_json.parents[2]
    return by_mac


def macs(sys_net: Path = Path("/sys/class/net")) -> list[str]:
    found = []
    for nic in sorted(sys_net.iterdir()):
        if nic.name == "lo":
            continue
        try:
            found.append((nic / "address").read_text().strip().lower())
        except OSError:
            continue
    return found


def pick(by_mac: dict[str, Path], seen: list[str]) -> Path | None:
    return next((by_mac[m] for m in seen if m in by_mac), None)


def wait_for_match(
    by_mac: dict[str, Path], sys_net: Path, wait: float
) -> tuple[Path | None, list[str]]:
    """NICs appear while udev works: look again until one matches or the wait is over."""
    deadline = time.monotonic() + wait
    while True:
        seen = macs(sys_net)
        match = pick(by_mac, seen)
        if match is not None or time.monotonic() > deadline:
            return match, seen
        time.sleep(0.2)


def apply(overlay: Path, root: Path) -> NodeSettings:
    shutil.copytree(overlay, root, symlinks=True, dirs_exist_ok=True)
    return NodeSettings.loads((root / paths.in_root(paths.NODE_JSON)).read_text())


def main(
    root: Path = Path("/"), sys_net: Path = Path("/sys/class/net"), wait: float = NIC_WAIT_SECONDS
) -> int:
    bundle = root / paths.in_root(paths.NODE_BUNDLE)
    by_mac = overlays(bundle)
    match, seen = wait_for_match(by_mac, sys_net, wait)
    if match is None:
        console(
            f"CHAOS: this machine (MAC {', '.join(seen) or 'none'}) is not a node of this "
            f"cluster image ({len(by_mac)} nodes known). No cluster settings applied: "
            "no address, no certificate, closed firewall, no cluster access."
        )
        shutil.rmtree(bundle, ignore_errors=True)
        return 0
    node = apply(match, root)
    if root == Path("/"):
        socket.sethostname(node.name)
    shutil.rmtree(bundle, ignore_errors=True)
    console(f"CHAOS: this machine takes node {node.name}'s settings (MAC {node.mac})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
