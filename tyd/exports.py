"""The cluster map for workload engines: JSON, an openMosix-style map, an MPI hostfile.

Rendering is pure; `chaosnode.files.atomic_write` puts each file in place (tmp + rename), so a
reader never sees half a file.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .membership import View

LIVE = ("alive", "suspect")  # in the JSON map (with their state); never the dead or left
USABLE = ("alive",)  # in the hostfile and the openMosix map: where work may go


def map_document(cluster: str, node: str, version: int, rows: Sequence[View]) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "node": node,
        "version": version,
        "members": [
            {
                "name": v.member.name,
                "address": str(v.member.address),
                "fingerprint": v.member.fingerprint,
                "state": v.state,
                "incarnation": v.member.incarnation,
                "heartbeat": v.member.heartbeat,
                "slots": v.member.slots,
                "last_heard_seconds": round(v.last_heard, 3),
            }
            for v in rows
            if v.state in LIVE
        ],
    }


def render_json(cluster: str, node: str, version: int, rows: Sequence[View]) -> str:
    return json.dumps(map_document(cluster, node, version, rows), indent=1) + "\n"


def _usable_by_address(rows: Sequence[View]) -> list[View]:
    return sorted((v for v in rows if v.state in USABLE), key=lambda v: v.member.address)


def render_mosix(rows: Sequence[View]) -> str:
    """openMosix map: `id first-address count` lines, consecutive addresses in one range.

    Ids number the live members in address order, starting at 1.
    """
    lines: list[str] = []
    node_id = 1
    start: ipaddress.IPv4Address | None = None
    count = 0
    for v in _usable_by_address(rows):
        addr = v.member.address
        if start is not None and addr == start + count:
            count += 1
            continue
        if start is not None:
            lines.append(f"{node_id} {start} {count}")
            node_id += count
        start, count = addr, 1
    if start is not None:
        lines.append(f"{node_id} {start} {count}")
    return "".join(f"{line}\n" for line in lines)


def render_hostfile(rows: Sequence[View]) -> str:
    """Open MPI / MPICH hostfile: one usable (alive, not suspect) member per line with its
    CPU count."""
    return "".join(f"{v.member.address} slots={v.member.slots}\n" for v in _usable_by_address(rows))


def known_contacts(path: Path) -> list[tuple[str, ipaddress.IPv4Address]]:
    """Members of a map JSON written by an earlier run: nodes this node has ever known."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out = []
        for m in doc["members"]:
            if m.get("state") in LIVE:
                out.append((str(m["name"]), ipaddress.IPv4Address(m["address"])))
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
