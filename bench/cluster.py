#!/usr/bin/env python3
"""Cluster benchmark in a private QEMU lab (root): boot-to-certificate (TPM enrollment) and
boot-to-READY per node, first power-on to a
fully meshed cluster (every tyd map complete, an ESP SA to every peer) for 3 and 5 nodes powered
on together, and TCP throughput between two guests: ESP AES-GCM, ESP ChaCha20-Poly1305 and
plaintext.

    sudo python3 bench/cluster.py [--sizes 3,5] [--megabytes 64] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.smoke.runner import PROBE, Smoke  # noqa: E402
from builder.smoke.scenario import load_scenario  # noqa: E402

READY = re.compile(r"(\d+)s: CHAOS-READY node=(\S+)")
RATE = re.compile(r"received (\d+) bytes .* ([0-9.]+) MB/s")


def write_lab(root: Path, name: str, n: int, scope: str, esp: str, services: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    nodes = "\n".join(
        f'  - {{name: node{i:02d}, mac: "52:54:00:97:00:{i:02x}", address: 10.97.0.{10 + i}}}'
        for i in range(1, n + 1)
    )
    (root / "chaos.yaml").write_text(
        f"cluster: {{name: {name}}}\nnetwork: {{subnet: 10.97.0.0/24, gateway: 10.97.0.1}}\n"
        f"security: {{scope: {scope}, esp_proposals: [{esp}]}}\n"
        f"firewall: {{services: [{services}]}}\n"
        "tyd: {seeds: [node01], heartbeat_seconds: 2, suspect_after_seconds: 6, "
        "remove_after_seconds: 12}\n"
        f"nodes:\n{nodes}\n"
    )
    boot = ", ".join(f"node{i:02d}" for i in range(1, n + 1))
    (root / "scenario.yaml").write_text(
        f"description: bench lab of {n} nodes, scope {scope}\nconfig: chaos.yaml\nboot: [{boot}]\n"
    )
    return root / "scenario.yaml"


def meshed(smoke: Smoke) -> bool:
    """Every member's tyd map (its JSON export, cheap to read) holds every other member alive,
    and it has an ESP SA with each of them."""
    for name in smoke.members:
        guest = smoke.guests[name]
        _, doc = guest.exec(["cat", "/run/tyd/map.json"])
        _, xfrm = guest.exec(["ip", "xfrm", "state"])
        try:
            alive = {m["name"] for m in json.loads(doc)["members"] if m["state"] == "alive"}
        except (ValueError, KeyError, TypeError):
            return False
        for peer in smoke.members:
            if peer != name and (peer not in alive or f"src {smoke.address(peer)} " not in xfrm):
                return False
    return True


def throughput(smoke: Smoke, port: int, megabytes: int) -> float:
    a, b = smoke.guests[smoke.members[0]], smoke.guests[smoke.members[1]]
    b.exec(["systemd-run", f"--unit=chaos-sink-{port}", *PROBE, "sink", str(port), "120"])
    time.sleep(2)
    a.exec(
        [*PROBE, "blast", smoke.address(smoke.members[1]), str(port), str(megabytes)], timeout=300
    )
    time.sleep(1)
    _, log = b.exec(["journalctl", "-b", "--no-pager", "-o", "cat", "-u", f"chaos-sink-{port}"])
    match = RATE.search(log)
    return float(match.group(2)) if match else float("nan")


def run_lab(
    scenario: Path, results: Path, cache: Path, rates: dict[str, int], megabytes: int
) -> None:
    smoke = Smoke(load_scenario(scenario), "pxe", results, cache, None)
    smoke.results.mkdir(parents=True, exist_ok=True)
    smoke.build()
    try:
        smoke.start_lab()
        first = time.monotonic()
        smoke.boot_members(together=True)  # a lab powers on all at once
        smoke.enrollment_times()  # each node's certificate, seconds after its kernel started
        while not meshed(smoke) and time.monotonic() - first < 1200:
            time.sleep(1)
        mesh = time.monotonic() - first
        ready = [
            m.group(2) + " " + m.group(1) + " s"
            for _, ok, d in smoke.report.results
            if ok and (m := READY.match(d))
        ]
        print(f"{len(smoke.members)} nodes: boot-to-READY {', '.join(ready)}")
        print(f"{len(smoke.members)} nodes: first power-on to full mesh {mesh:.0f} s", flush=True)
        for label, port in rates.items():
            print(f"  {label}: {throughput(smoke, port, megabytes):.1f} MB/s", flush=True)
    finally:
        smoke.teardown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="3,5")
    ap.add_argument("--megabytes", type=int, default=64)
    ap.add_argument("--cache", type=Path, default=Path("/var/tmp/chaos-image-cache"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chaos-bench-cluster-"))
    for n in (int(s) for s in args.sizes.split(",") if s):
        scenario = write_lab(work / f"all-{n}", "bench-all", n, "all", "aes128gcm16-x25519", "")
        run_lab(scenario, work / f"all-{n}-run", args.cache, {}, args.megabytes)
    # Scope migration: tcp 12820 is ESP, tcp 5201 is plaintext between the same two guests.
    for esp in ("aes128gcm16-x25519", "chacha20poly1305-x25519"):
        scenario = write_lab(
            work / f"mig-{esp}",
            "bench-mig",
            2,
            "migration",
            esp,
            "{name: bench, port: 5201, source: cluster}",
        )
        run_lab(
            scenario,
            work / f"mig-{esp}-run",
            args.cache,
            {f"ESP {esp.split('-')[0]}, tcp 12820": 12820, "plaintext, tcp 5201": 5201},
            args.megabytes,
        )


if __name__ == "__main__":
    main()
