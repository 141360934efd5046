"""The IPsec connection between this node and one peer: declared once, here.

chaos-build renders it into swanctl.conf for every peer it knows; tyd loads it through VICI
for a peer that joins at run time. Both call `connection()`, so both get the same policy.

Per peer, not one wildcard: the peer's address is the only remote address and its identity
(`remote.id`), so charon accepts only a cluster certificate that names that address. A member
holding a valid certificate cannot speak IKE as another member from its own address, nor as
itself from another member's address.

Stdlib only: this runs on the nodes under Debian's python3.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final, Union

SCOPES: Final = ("all", "migration")
DPD_SECONDS: Final = 30
# What charon does when the peer goes silent, closes, or first traffic arrives: fall back to
# the trap policy, so the next packet to the peer brings a new SA up (never plaintext).
ON_EVENT: Final = "trap"

# A swanctl section in VICI shape: strings, lists of strings, nested sections.
Value = Union[str, list[str], "Section"]
Section = dict[str, Value]


@dataclass(frozen=True)
class Policy:
    """What every connection of this node shares."""

    address: ipaddress.IPv4Address
    ike_proposals: tuple[str, ...]
    esp_proposals: tuple[str, ...]
    rekey_minutes: int
    dpd_seconds: int
    scope: str  # one of SCOPES
    protected_ports: tuple[int, ...]  # tcp ports that scope `migration` protects

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"scope {self.scope!r} is not one of {', '.join(SCOPES)}")


@dataclass(frozen=True)
class Certs:
    """Our certificate and the cluster CA: file names under /etc/swanctl for swanctl.conf,
    PEM data for VICI."""

    node: str
    ca: str


def conn_name(peer_name: str) -> str:
    return f"peer-{peer_name}"


def children(policy: Policy, peer_name: str, peer: ipaddress.IPv4Address) -> Section:
    """Transport-mode children between the two hosts only (never dynamic selectors, which
    would capture everything): all traffic, or per protected tcp port in both directions."""
    me, name = f"{policy.address}/32", conn_name(peer_name)
    if policy.scope == "all":
        selectors = [(name, me, f"{peer}/32")]
    else:
        selectors = []
        for port in policy.protected_ports:
            selectors.append((f"{name}-to-{port}", f"{me}[tcp]", f"{peer}/32[tcp/{port}]"))
            selectors.append((f"{name}-from-{port}", f"{me}[tcp/{port}]", f"{peer}/32[tcp]"))
    out: Section = {}
    for child, local_ts, remote_ts in selectors:
        out[child] = {
            "mode": "transport",
            "local_ts": [local_ts],
            "remote_ts": [remote_ts],
            "esp_proposals": list(policy.esp_proposals),
            "rekey_time": f"{policy.rekey_minutes}m",
            "start_action": ON_EVENT,
            "dpd_action": ON_EVENT,
            "close_action": ON_EVENT,
        }
    return out


def connection(
    policy: Policy, peer_name: str, peer: ipaddress.IPv4Address, certs: Certs
) -> dict[str, Section]:
    """{name: connection} for one peer, as swanctl.conf's `connections` and VICI's
    load-conn both take it."""
    me = str(policy.address)
    return {
        conn_name(peer_name): {
            "version": "2",
            "local_addrs": [me],
            "remote_addrs": [str(peer)],
            "proposals": list(policy.ike_proposals),
            "dpd_delay": f"{policy.dpd_seconds}s",
            "local": {"auth": "pubkey", "certs": [certs.node], "id": me},
            "remote": {
                "auth": "pubkey",
                "id": str(peer),
                "cacerts": [certs.ca],
                "revocation": "relaxed",
            },
            "children": children(policy, peer_name, peer),
        }
    }
