"""The TPM registry (which machine may be which node) and the machines waiting for approval.

The registry is a YAML file an admin reviews and versions (security.tpm_registry, beside
chaos.yaml): node name -> list of "sha256:<hex>" EK hashes. EK hashes are not secret.
    # TPM registry of chaos-lab ...
    node01:
      - sha256:4ede...  # approved 2026-11-27 from 10.99.0.11 (52:54:00:99:00:11)
Pending machines (unknown EK) go to PKI_DIR/pending.jsonl, newest kept, bounded in number.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from chaosnode.files import atomic_write

from ..errors import ChaosError, ConfigError, Problem
from ..loader import Document, dotted, load_text, read_bounded
from ..model import Cluster
from ..security.model import SecurityModel
from .journal import Journal

EK_HASH: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_PENDING: Final = 1000
PENDING_FILE: Final = "pending.jsonl"  # in PKI_DIR
# the journal is compacted past this many bytes per kept entry (a line is ~200-700 bytes)
COMPACT_BYTES_PER_ENTRY: Final = 1024
HEADER: Final = (
    "# TPM registry: which machine (the sha256 of its TPM endorsement key) may "
    "enroll as which node.\n# EK hashes are not secret: review and version this "
    "file. `chaos-build enroll approve` adds entries.\n"
)


class RegistryError(ChaosError):
    """The registry cannot do what was asked (unknown hash, unknown node, ...)."""


@dataclass(frozen=True)
class Registry:
    """node name -> EK hashes, as loaded (and checked against chaos.yaml)."""

    path: Path
    nodes: dict[str, tuple[str, ...]]

    def node_for(self, ek_hash: str) -> str | None:
        for node, hashes in self.nodes.items():
            if ek_hash in hashes:
                return node
        return None


def load_registry(path: Path, cluster: Cluster | None = None) -> Registry:
    """Load and check the registry; a missing file is an empty registry."""
    if not path.exists():
        return Registry(path, {})
    return parse_registry(load_text(read_bounded(path), str(path)), path, cluster)


def parse_registry(doc: Document, path: Path, cluster: Cluster | None = None) -> Registry:
    problems: list[Problem] = []

    def report(where: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(doc.file, doc.line(where), dotted(where), message))

    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        report((), "the registry must be a mapping of node name -> list of EK hashes")
        raise ConfigError(problems)
    known = {n.name for n in cluster.nodes} if cluster else None
    nodes: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for name, hashes in data.items():
        if known is not None and name not in known:
            report((name,), "no such node in chaos.yaml; remove the entry or add the node")
        if hashes is None:
            hashes = []
        if not isinstance(hashes, list):
            report((name,), "must be a list of EK hashes ('- sha256:<64 hex digits>')")
            continue
        for i, value in enumerate(hashes):
            if not isinstance(value, str) or not EK_HASH.match(value):
                report(
                    (name, i),
                    f"{value!r} is not an EK hash; write sha256:<64 hex digits> "
                    "as `chaos-build enroll pending` shows it",
                )
            elif value in owner:
                report(
                    (name, i),
                    f"{value} is already registered for {owner[value]}; one machine is one node",
                )
            else:
                owner[value] = name
        nodes[name] = tuple(h for h in hashes if isinstance(h, str))
    if problems:
        raise ConfigError(problems)
    return Registry(path, nodes)


def approve(path: Path, cluster: Cluster, ek_hash: str, node: str, comment: str = "") -> bool:
    """Add ek_hash for node to the registry file, editing its text so the admin's layout
    and comments stay. Returns False when it was already there."""
    if not EK_HASH.match(ek_hash):
        raise RegistryError(f"{ek_hash!r} is not an EK hash (sha256:<64 hex digits>)")
    if node not in {n.name for n in cluster.nodes}:
        raise RegistryError(f"no node named {node!r} in chaos.yaml")
    registry = load_registry(path, cluster)
    holder = registry.node_for(ek_hash)
    if holder == node:
        return False
    if holder is not None:
        raise RegistryError(
            f"{path}: {ek_hash} is registered for {holder}; remove it there "
            "first (one machine is one node)"
        )
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    item = f"  - {ek_hash}" + (f"  # {comment}" if comment else "")
    lines = text.splitlines()
    doc = load_text(text, str(path)) if text.strip() else None
    hashes = registry.nodes.get(node)
    if doc is None or hashes is None:
        lines += [f"{node}:", item]
    elif hashes and doc.line((node, len(hashes) - 1)) != doc.line((node,)):
        last = doc.line((node, len(hashes) - 1))
        assert last is not None
        indent = re.match(r"^\s*", lines[last - 1])
        lines.insert(last, (indent.group(0) if indent else "  ") + item.lstrip())
    else:  # `node01:` or `node01: []` (or a flow list): rewrite as a block list
        line = doc.line((node,))
        assert line is not None
        items = [f"  - {h}" for h in hashes]
        lines[line - 1 : line] = [f"{node}:", *items, item]
    atomic_write(path, "\n".join(lines) + "\n")
    load_registry(path, cluster)  # what we wrote must read back
    return True


# -- pending machines -------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    ek_hash: str
    node: str
    macs: tuple[str, ...]
    source: str
    first_seen: str
    last_seen: str
    attempts: int


class PendingStore:
    """PKI_DIR/pending.jsonl: one line per request of an unknown machine (O(1), see
    journal.py), read as one entry per EK hash, the most recent MAX_PENDING kept."""

    def __init__(self, path: Path, limit: int = MAX_PENDING) -> None:
        self.path = path
        self.limit = limit
        self._journal = Journal(path, self._fold, limit * COMPACT_BYTES_PER_ENTRY)

    def entries(self) -> list[Pending]:
        return [p for p in map(_pending, self._fold(self._journal.lines())) if p is not None]

    def record(
        self, ek_hash: str, node: str, macs: tuple[str, ...], source: str, now: dt.datetime
    ) -> None:
        when = now.isoformat(timespec="seconds")
        self._journal.append(_line(Pending(ek_hash, node, macs, source, when, when, 1)))

    def remove(self, ek_hash: str) -> Pending | None:
        found = next((p for p in self.entries() if p.ek_hash == ek_hash), None)
        if found is not None:
            self._journal.append({"ek_hash": ek_hash, "removed": True})
        return found

    def _fold(self, lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Sightings of one machine add up (first seen, tries); a removal forgets it. The
        cap holds at every line, as if the list were rewritten each time: the entry heard
        from longest ago goes, and a later removal does not bring it back."""
        seen: dict[str, Pending] = {}  # in the order last heard from
        for line in lines:
            if line.get("removed") is True:
                seen.pop(str(line.get("ek_hash")), None)
                continue
            p = _pending(line)
            if p is None:
                continue
            old = seen.pop(p.ek_hash, None)
            if old is not None:
                p = replace(p, first_seen=old.first_seen, attempts=old.attempts + p.attempts)
            seen[p.ek_hash] = p
            if len(seen) > self.limit:
                del seen[next(iter(seen))]
        return [_line(p) for p in sorted(seen.values(), key=lambda p: p.last_seen)]


def _line(p: Pending) -> dict[str, Any]:
    return {**asdict(p), "macs": list(p.macs)}


def _pending(line: dict[str, Any]) -> Pending | None:
    """A line as a Pending entry; None for one that is not (hand-edited, or foreign)."""
    texts = ("ek_hash", "node", "source", "first_seen", "last_seen")
    macs, attempts = line.get("macs"), line.get("attempts")
    if (
        not all(isinstance(line.get(k), str) for k in texts)
        or type(attempts) is not int
        or not isinstance(macs, list)
        or not all(isinstance(m, str) for m in macs)
    ):
        return None
    return Pending(
        line["ek_hash"],
        line["node"],
        tuple(macs),
        line["source"],
        line["first_seen"],
        line["last_seen"],
        attempts,
    )


def registry_path(cluster: Cluster, config: Path) -> Path:
    path = Path(cluster.section(SecurityModel).security.tpm_registry)
    return path if path.is_absolute() else config.resolve().parent / path
