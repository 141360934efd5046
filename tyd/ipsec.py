"""IPsec adapter: a strongSwan connection through VICI for each peer that the rendered
swanctl.conf does not already cover (its address is not in `static_peers`).

The connection is IKEv2 with certificate auth (our node certificate, the peer must hold a
cluster-CA certificate naming its address), and a trap-installed transport-mode child
between the two addresses only: never dynamic selectors, which would capture everything.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import HookError
from .member import Member


def conn_name(peer: Member) -> str:
    return f"tyd-{peer.name}"


def connection(me: ipaddress.IPv4Address, peer: Member, cert_pem: str, ca_pem: str,
               ike_proposals: Sequence[str], esp_proposals: Sequence[str]) -> dict[str, Any]:
    """The load-conn message for one peer (pure; certificates are PEM data, not paths)."""
    name = conn_name(peer)
    child = {"mode": "transport", "local_ts": [f"{me}/32"], "remote_ts": [f"{peer.address}/32"],
             "esp_proposals": list(esp_proposals), "start_action": "trap",
             "close_action": "trap", "dpd_action": "trap"}
    return {name: {
        "version": "2",
        "local_addrs": [str(me)],
        "remote_addrs": [str(peer.address)],
        "proposals": list(ike_proposals),
        "local": {"auth": "pubkey", "certs": [cert_pem], "id": str(me)},
        "remote": {"auth": "pubkey", "id": str(peer.address), "cacerts": [ca_pem]},
        "children": {name: child},
    }}


class ViciHook:
    name = "vici"

    def __init__(self, socket_path: Path, address: ipaddress.IPv4Address, cert_pem: str,
                 ca_pem: str, static_peers: frozenset[ipaddress.IPv4Address],
                 ike_proposals: Sequence[str], esp_proposals: Sequence[str],
                 timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.address = address
        self.cert_pem = cert_pem
        self.ca_pem = ca_pem
        self.static_peers = static_peers
        self.ike_proposals = tuple(ike_proposals)
        self.esp_proposals = tuple(esp_proposals)
        self.timeout = timeout

    def covers(self, peer: Member) -> bool:
        """Is this peer ours to manage (not already in the rendered swanctl.conf)?"""
        return peer.address not in self.static_peers and peer.address != self.address

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
        conn = connection(self.address, peer, self.cert_pem, self.ca_pem, self.ike_proposals,
                          self.esp_proposals)
        self._call(f"load-conn {conn_name(peer)}", lambda s: s.load_conn(conn))

    def _unload(self, peer: Member) -> None:
        import vici

        name = conn_name(peer)

        def unload(session: Any) -> None:
            session.unload_conn({"name": name})
            try:  # unload-conn leaves trap-started SAs up; tear them down too
                for _ in session.terminate({"ike": name, "force": "yes", "timeout": "-1"}):
                    pass
            except vici.exception.CommandException:
                pass  # no SA was up

        self._call(f"unload-conn {name}", unload)
