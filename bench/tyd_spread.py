#!/usr/bin/env python3
"""Join, leave and failure spread between real tyd daemons: N `python -m tyd` processes on
loopback (configs from tests/tyd/helpers.py's tyd.json builder), per gossip mode. Printed:
the seconds and rounds (heartbeats) until every daemon's map export shows a newcomer, a
member that left (SIGTERM: it LEAVEs), and a member that was killed (SIGKILL: detected).

    .venv/bin/python bench/tyd_spread.py [--nodes 30] [--modes swim,digest] [--heartbeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "tyd"))

from helpers import make_pki, name, raw_config  # noqa: E402

from builder.pki import Pki  # noqa: E402


def alive_in(run: Path, i: int) -> set[str]:
    try:
        doc = json.loads((run / name(i) / "map.json").read_text())
        return {m["name"] for m in doc["members"] if m.get("state") in ("alive", "suspect")}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def start(
    pki: Pki, i: int, port: int, run: Path, mode: str, beat: float
) -> subprocess.Popen[bytes]:
    cfg = raw_config(
        pki,
        i,
        port,
        run,
        seeds=(1, 2),
        heartbeat_seconds=beat,
        suspect_after_seconds=3 * beat,
        remove_after_seconds=6 * beat,
        clock_skew_seconds=30.0,
        io_timeout_seconds=10.0,
        gossip=mode,
    )
    path = run / f"{name(i)}.json"
    path.write_text(json.dumps(cfg))
    return subprocess.Popen(
        [sys.executable, "-m", "tyd", "--config", str(path)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait(what: str, ok: Callable[[], bool], limit: float) -> float:
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > limit:
            print(f"    {what}: not done after {limit:.0f} s", flush=True)
            return float("inf")
        time.sleep(0.1)
    return time.monotonic() - t0


def run_mode(pki: Pki, n: int, mode: str, beat: float, root: Path) -> dict[str, float]:
    port = random.randint(30000, 40000)
    run = root / mode
    run.mkdir()
    procs = {i: start(pki, i, port, run, mode, beat) for i in range(1, n + 1)}
    out: dict[str, float] = {}
    try:
        names = {name(i) for i in procs}
        out["form"] = wait("forming", lambda: all(alive_in(run, i) == names for i in procs), 300)
        time.sleep(3 * beat)
        newcomer = n + 1
        procs[newcomer] = start(pki, newcomer, port, run, mode, beat)
        out["join"] = wait(
            "join", lambda: all(name(newcomer) in alive_in(run, i) for i in procs), 300
        )
        time.sleep(3 * beat)
        leaver = procs.pop(n)
        leaver.send_signal(signal.SIGTERM)
        out["leave"] = wait(
            "leave", lambda: all(name(n) not in alive_in(run, i) for i in procs), 300
        )
        leaver.wait(30)
        time.sleep(3 * beat)
        victim = procs.pop(n - 1)
        victim.kill()
        victim.wait(30)
        out["kill"] = wait(
            "kill", lambda: all(name(n - 1) not in alive_in(run, i) for i in procs), 300
        )
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--modes", default="swim,digest")
    ap.add_argument("--heartbeat", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tyd-spread-") as tmp:
        root = Path(tmp)
        pki = make_pki(root / "pki", args.nodes + 1)
        print(f"{args.nodes} real tyd daemons, heartbeat {args.heartbeat:.1f} s", flush=True)
        print("| mode | form s | join s (rounds) | leave s (rounds) | kill s (rounds) |")
        print("|---|---|---|---|---|")
        for mode in args.modes.split(","):
            r = run_mode(pki, args.nodes, mode, args.heartbeat, root)
            hb = args.heartbeat
            print(
                f"| {mode} | {r['form']:.1f} | "
                + " | ".join(f"{r[k]:.1f} ({r[k] / hb:.0f})" for k in ("join", "leave", "kill"))
                + " |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
