"""IPsec adapter: a strongSwan connection through VICI for each peer that the rendered
swanctl.conf does not already cover (its address is not in `static_peers`).

The connection is `chaosnode.ipsec.connection()`, the one chaos-build renders for the peers it
knows, so a peer that joins at run time gets the same policy; certificates go as PEM data.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Any

from chaosnode.ipsec import Certs, Policy, Section, conn_name, connection

from .errors import HookError
from .member import Member


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
            await asyncio.to_thread(self._load, member)

    async def remove(self, member: Member) -> None:
        if self.covers(member):
            await asyncio.to_thread(self._unload, member)

    def _call(self, what: str, fn: Any) -> None:
        import vici  # imported here so tyd runs (hook disabled) where vici is absent

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
            fn(vici.Session(sock=sock))
        except vici.exception.CommandException as exc:
            raise HookError(f"vici {what}: {exc}") from None
        except OSError as exc:
            raise HookError(f"vici {what}: {self.socket_path}: {exc}") from None
        finally:
            sock.close()

    def _load(self, peer: Member) -> None:
        conn = self.connection(peer)
        self._call(f"load-conn {conn_name(peer.name)}", lambda s: s.load_conn(conn))

    def _unload(self, peer: Member) -> None:
        import vici

        name = conn_name(peer.name)

        def unload(session: Any) -> None:
            session.unload_conn({"name": name})
            try:  # unload-conn leaves trap-started SAs up; tear them down too
                for _ in session.terminate({"ike": name, "force": "yes", "timeout": "-1"}):
                    pass
            except vici.exception.CommandException:
                pass  # no SA was up

        self._call(f"unload-conn {name}", unload)
