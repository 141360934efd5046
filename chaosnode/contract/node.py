"""node.json: the node's public settings, rendered by chaos-build for each node; read at boot
(chaos-identity picks an overlay by MAC, chaos-enroll, chaos-renew, chaos-crl, the
member pushes, the self-test)."""

from __future__ import annotations

from dataclasses import dataclass

from .record import JsonRecord


@dataclass(frozen=True)
class NodeSettings(JsonRecord):
    name: str
    fqdn: str
    address: str
    mac: str
    cluster: str
    scope: str
    enroll_url: str  # "" when serve.address is not set: the node cannot enroll
    push_url: str  # serve's member pushes (chaosnode.push); "" when serve.address is not set
    key_type: str
    attestation: str  # "tpm" or "approval"
