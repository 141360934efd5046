"""chaos-hosts.service: /etc/hosts follows tyd's map.

chaos-build renders /etc/hosts with this node and the peers it knows before joining (the
hubs: tyd seeds and Slurm heads; a hub knows every node), so the file does not grow with the
cluster. Every other member gets its line here once tyd has verified it (the same moment tyd
adds its IPsec connection): Slurm resolves member names (slurmctld to a dynamic node, pmix
between compute nodes). Lines for members that left go again; the rendered lines stay.

    python3 -I -m chaosnode.hosts [--once]

Stdlib only: this runs on the nodes under Debian's python3.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from chaosnode import paths
from chaosnode.files import read_json

HOSTS: Final = Path(paths.HOSTS_FILE)
MARK: Final = "# members tyd added at run time (chaosnode.hosts)"
POLL_SECONDS: Final = 2.0
LIVE: Final = ("alive", "suspect")
MAX_MAP_BYTES: Final = 16 << 20
Entry = tuple[str, str]  # (address, name)


def live_entries(doc: Any) -> list[Entry]:
    """(address, name) of the members tyd's map export lists as alive or suspect; anything
    that is not a plain name and an IPv4 address is skipped."""
    members = doc.get("members") if isinstance(doc, dict) else None
    out = []
    for m in members if isinstance(members, list) else ():
        if not isinstance(m, dict) or m.get("state") not in LIVE:
            continue
        name, address = m.get("name"), m.get("address")
        if not isinstance(name, str) or not name.replace("-", "").isalnum():
            continue
        try:
            out.append((str(ipaddress.IPv4Address(address)), name))
        except ValueError:
            continue
    return sorted(out, key=lambda e: e[1])


def rendered_part(text: str) -> str:
    """The file as chaos-build rendered it: everything before our mark."""
    head, _, _ = text.partition(f"\n{MARK}\n")
    return head if head.endswith("\n") else head + "\n"


def known_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        names.update(fields[1:])
    return names


def with_members(text: str, members: Iterable[Entry], domain: str) -> str:
    """text's rendered part plus a line for each member it does not name already."""
    base = rendered_part(text)
    have = known_names(base)
    lines = [
        f"{addr}\t{name}.{domain} {name}" if domain else f"{addr}\t{name}"
        for addr, name in members
        if name not in have
    ]
    return base if not lines else base + MARK + "\n" + "\n".join(lines) + "\n"


def domain_of(node_json: Path) -> str:
    """The cluster's DNS domain, from this node's rendered identity (fqdn minus name)."""
    try:
        doc = json.loads(node_json.read_text())
        name, fqdn = str(doc["name"]), str(doc["fqdn"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return fqdn[len(name) + 1 :] if fqdn.startswith(f"{name}.") else ""


def read_map(path: Path) -> list[Entry] | None:
    try:
        return live_entries(read_json(path, MAX_MAP_BYTES))
    except (OSError, ValueError):
        return None


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.chaos-hosts")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def sync(hosts: Path, tyd_map: Path, domain: str) -> bool:
    """One round; True when the file changed."""
    members = read_map(tyd_map)
    if members is None:
        return False
    try:
        text = hosts.read_text()
    except OSError:
        return False
    new = with_members(text, members, domain)
    if new == text:
        return False
    write_atomic(hosts, new)
    return True


def main(argv: Sequence[str] | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    p = argparse.ArgumentParser(prog="python3 -m chaosnode.hosts", description=__doc__)
    p.add_argument("--hosts", type=Path, default=HOSTS)
    p.add_argument("--map", type=Path, default=Path(paths.TYD_EXPORTS["json"]))
    p.add_argument("--node-json", type=Path, default=Path(paths.NODE_JSON))
    p.add_argument("--once", action="store_true", help="one round, then exit")
    args = p.parse_args(argv)
    domain = domain_of(args.node_json)
    while True:
        try:
            sync(args.hosts, args.map, domain)
        except OSError as exc:
            print(f"chaos-hosts: cannot write {args.hosts}: {exc}", flush=True)
        if args.once:
            return 0
        sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
