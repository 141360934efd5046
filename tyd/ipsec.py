"""IPsec adapter: a strongSwan connection through VICI for each peer that the rendered
swanctl.conf does not already cover (its address is not in `static_peers`).

The connection is `chaosnode.ipsec.connection()`, the one chaos-build renders for the peers it
knows, so a peer that joins at run time gets the same policy; certificates go as PEM data.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaosnode.ipsec import Certs, Policy, Section, conn_name, connection

from .errors import HookError
from .hooks import Failure
from .member import Member
from .membership import Change, ChangeKind


class ViciHook:
    name = "vici"

    def __init__(
        self,
        socket_path: Path,
        policy: Policy,
        cert_pem: str,
        ca_pem: str,
        static_peers: frozenset[ipaddress.IPv4Address],
        timeout: float = 10.0,
    ) -> None:
        self.socket_path = socket_path
        self.policy = policy
        self.certs = Certs(node=cert_pem, ca=ca_pem)
        self.static_peers = static_peers
        self.timeout = timeout

    def covers(self, peer: Member) -> bool:
        """Is this peer ours to manage (not already in the rendered swanctl.conf)?"""
        return peer.address not in self.static_peers and peer.address != self.policy.address

    def connection(self, peer: Member) -> dict[str, Section]:
        """The load-conn message for one peer (pure)."""
        return connection(self.policy, peer.name, peer.address, self.certs)

    async def add(self, member: Member) -> None:
        if self.covers(member):
            await asyncio.to_thread(self._batch, [Change(ChangeKind.ADD, member)], True)

    async def remove(self, member: Member) -> None:
        if self.covers(member):
            await asyncio.to_thread(self._batch, [Change(ChangeKind.REMOVE, member)], True)

    async def apply_batch(self, changes: Sequence[Change]) -> list[Failure]:
        mine = [c for c in changes if self.covers(c.member)]
        return await asyncio.to_thread(self._batch, mine, False) if mine else []

    def _batch(self, changes: Sequence[Change], single: bool) -> list[Failure]:
        """Every change through one VICI session, in order; a single change raises its
        error, a batch returns each failure with its change."""
        import vici  # imported here so tyd runs (hook disabled) where vici is absent

        failures: list[Failure] = []
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(str(self.socket_path))
            except OSError as exc:
                failures = [(c, self._error(c, f"{self.socket_path}: {exc}")) for c in changes]
            else:
                session = vici.Session(sock=sock)
                for change in changes:
                    try:
                        self._one(session, change)
                    except (vici.exception.CommandException, OSError) as exc:
                        failures.append((change, self._error(change, str(exc))))
        finally:
            sock.close()
        if single and failures:
            raise failures[0][1]
        return failures

    @staticmethod
    def _error(change: Change, why: str) -> HookError:
        verb = "load-conn" if change.kind is ChangeKind.ADD else "unload-conn"
        return HookError(f"vici {verb} {conn_name(change.member.name)}: {why}")

    def _one(self, session: Any, change: Change) -> None:
        if change.kind is ChangeKind.ADD:
            session.load_conn(self.connection(change.member))
            return
        import vici

        name = conn_name(change.member.name)
        session.unload_conn({"name": name})
        try:  # unload-conn leaves trap-started SAs up; tear them down too
            for _ in session.terminate({"ike": name, "force": "yes", "timeout": "-1"}):
                pass
        except vici.exception.CommandException:
            pass  # no SA was up
