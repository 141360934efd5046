"""The status file the daemon writes each tick, and its rendering for `tyd status`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import TydError
from .exports import map_document
from .membership import View


def document(
    cluster: str,
    node: str,
    address: str,
    joined: bool,
    uptime: float,
    version: int,
    rows: Sequence[View],
    counters: Mapping[str, int],
    now: float,
) -> dict[str, Any]:
    doc = map_document(cluster, node, version, rows)
    doc.update(
        address=address,
        joined=joined,
        uptime_seconds=round(uptime, 1),
        counters=dict(sorted(counters.items())),
        written=now,
    )
    return doc


def read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TydError(f"{path}: no status file; is tyd running on this node?") from None
    except (OSError, ValueError) as exc:
        raise TydError(f"{path}: cannot read the status file: {exc}") from None
    if not isinstance(doc, dict) or "members" not in doc or "counters" not in doc:
        raise TydError(f"{path}: not a tyd status file")
    return doc


def render(doc: Mapping[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    age = now - float(doc.get("written", 0))
    role = "Philip (member)" if doc.get("joined") else "Terrence (joining)"
    lines = [
        f"cluster {doc.get('cluster')}  node {doc.get('node')} ({doc.get('address')})  "
        f"{role}  map version {doc.get('version')}  up {doc.get('uptime_seconds')}s",
        f"status written {age:.1f}s ago" + ("  (stale: is tyd running?)" if age > 60 else ""),
        "",
        f"{'NAME':<16} {'ADDRESS':<15} {'STATE':<8} {'LAST HEARD':>10}  "
        f"{'EPOCH':>13} {'BEAT':>6}  FINGERPRINT",
    ]
    for m in doc["members"]:
        lines.append(
            f"{m['name']:<16} {m['address']:<15} {m['state']:<8} "
            f"{m['last_heard_seconds']:>9.1f}s  {m['incarnation']:>13} "
            f"{m['heartbeat']:>6}  {m['fingerprint'][:16]}"
        )
    lines += ["", "counters: " + "  ".join(f"{k}={v}" for k, v in doc["counters"].items())]
    return "\n".join(lines) + "\n"
