"""`chaos-build enroll serve|pending|approve|approve-boot`: what the CLI does, errors typed
(exit codes are cli.py's job)."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from ..model import Cluster
from ..pki import Pki
from ..security.model import SecurityModel
from .boots import BOOTS_FILE, BootStore
from .registry import PENDING_FILE, PendingStore, RegistryError, registry_path
from .registry import approve as approve_hash
from .server import open_service
from .service import InvalidInput, settings_for


def _out(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def serve(cluster: Cluster, config: Path, pki: Pki, address: str | None, port: int | None) -> int:
    """Run the enrollment service in the foreground until Ctrl-C / SIGTERM."""
    try:
        settings = settings_for(cluster, address, port)
    except InvalidInput as exc:
        raise InvalidInput(f"{config}: {exc}") from None
    logging.getLogger("chaos.enroll").setLevel(logging.INFO)
    server = open_service(cluster, config, pki, settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start_background()
    hours = cluster.section(SecurityModel).security.node_cert_hours
    _out(
        f"enrollment service on {server.url} (registry {registry_path(cluster, config)}, "
        f"certificates for {hours} h); Ctrl-C stops"
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    _out(
        "enrollment service stopped; requests: "
        + " ".join(f"{k}={v}" for k, v in sorted(server.counters.items()))
    )
    return 0


def pending(pki: Pki) -> int:
    entries = PendingStore(pki.paths.root / PENDING_FILE).entries()
    now = dt.datetime.now(dt.UTC)
    boots = [b for b in BootStore(pki.paths.root / BOOTS_FILE).entries() if not b.used_at]
    if not entries and not boots:
        _out("no machines are waiting for approval")
        return 0
    for p in entries:
        print(
            f"{p.ek_hash}  as {p.node:12} from {p.source:15} macs {','.join(p.macs) or '-'}"
            f"  first {p.first_seen}  last {p.last_seen}  ({p.attempts} tries)"
        )
    if entries:
        _out("approve one with: chaos-build enroll approve EK_HASH --node NAME")
    for b in boots:
        print(
            f"boot {b.fingerprint}  as {b.node:12} from {b.source:15} macs "
            f"{','.join(b.macs) or '-'}  age {_minutes(b.age(now))}  last asked "
            f"{_minutes(b.silent_for(now))} ago  ({b.state}, no TPM)"
        )
    if boots:
        _out("compare with the node's console, then: chaos-build enroll approve-boot FINGERPRINT")
    return 0


def _minutes(span: dt.timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


def approve_boot(pki: Pki, fingerprint: str) -> int:
    """Approve one boot of a node without a TPM, by the fingerprint on its console."""
    boot = BootStore(pki.paths.root / BOOTS_FILE).approve(fingerprint, dt.datetime.now(dt.UTC))
    print(
        f"{boot.node}: approved boot {boot.fingerprint} (from {boot.source}, macs "
        f"{', '.join(boot.macs) or '-'}); it gets its certificate at its next try"
    )
    return 0


def approve(cluster: Cluster, config: Path, pki: Pki, ek_hash: str, node: str) -> int:
    store = PendingStore(pki.paths.root / PENDING_FILE)
    seen = next((p for p in store.entries() if p.ek_hash == ek_hash), None)
    comment = f"approved {dt.datetime.now(dt.UTC):%Y-%m-%d}"
    if seen is not None:
        comment += f" from {seen.source} ({', '.join(seen.macs) or 'no MAC'})"
    path = registry_path(cluster, config)
    try:
        added = approve_hash(path, cluster, ek_hash, node, comment)
    except RegistryError as exc:
        raise InvalidInput(str(exc)) from None
    store.remove(ek_hash)
    print(f"{node}: {'registered' if added else 'already registered'} {ek_hash} in {path}")
    return 0
