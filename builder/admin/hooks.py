"""What `chaos-build serve` starts for the event record and the admin view, and stops.

Every part is optional: a part that cannot start (the record's database broken, a port
taken, no CA yet) says so once on serve's log and serve goes on answering boots.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from chaosnode.console import say

from ..errors import ChaosError
from ..model import Cluster
from ..night import night_of
from ..pki import pki_for
from . import events, logs
from .push import open_push
from .web import AdminView, ensure_token, open_admin


class _Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class AdminHooks:
    log: events.EventLog
    parts: list[_Stoppable] = field(default_factory=list)

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()
        self.log.flush()
        self.log.stop()
        events.activate(None)


def _followers(
    cluster: Cluster, record: Callable[[events.Event], None], dnsmasq_log: Path, access_log: Path
) -> list[logs.Follower]:
    night = night_of(cluster)

    def on_dnsmasq(line: str) -> None:
        e = logs.dnsmasq_event(cluster, night, line, dt.datetime.now(dt.UTC))
        if e is not None:
            record(e)

    def on_access(line: str) -> None:
        e = logs.nginx_event(cluster, night, line)
        if e is not None:
            record(e)

    return [
        logs.Follower(dnsmasq_log, on_dnsmasq).start(),
        logs.Follower(access_log, on_access).start(),
    ]


def start(
    cluster: Cluster, config: Path, run_dir: Path, dnsmasq_log: Path, access_log: Path
) -> AdminHooks:
    log = events.EventLog(run_dir / events.DB_NAME, say).start()
    events.activate(log)
    hooks = AdminHooks(log)
    hooks.parts += _followers(cluster, log.record, dnsmasq_log, access_log)
    serve = cluster.serve
    try:
        if serve.address is not None:
            pushes = open_push(
                cluster, pki_for(cluster, config), str(serve.address), serve.push_port, log.record
            )
            pushes.start_background()
            hooks.parts.append(pushes)
    except ChaosError as exc:
        say(f"warning: member pushes are off: {exc}")
    try:
        view = AdminView(cluster, log.path, lambda: dt.datetime.now(dt.UTC), lambda: log.dropped)
        admin = open_admin(view, ensure_token(run_dir), str(serve.admin_address), serve.admin_port)
        admin.start_background()
        hooks.parts.append(admin)
        say(
            f"admin page and /metrics on {admin.url} (log in with "
            f"{admin.url}/login?token=$(cat {run_dir / 'admin.token'}))"
        )
    except ChaosError as exc:
        say(f"warning: the admin page is off: {exc}")
    return hooks
