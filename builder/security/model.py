"""The security model section: chaos.yaml's `security:` (IPsec scope and proposals, the PKI,
enrollment's certificates, the TPM registry, measured boot), declared once here and named by
the enroll feature (builder/features/enroll.py), which the loader, the reference and `show`
ask. The closed choices (Scope, KeyType, MeasuredBoot) are the core's (builder/model.py): nodes,
tyd and the tests name them too."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import KeyType, MeasuredBoot, Scope
from ..settings import setting


@dataclass(frozen=True, kw_only=True)
class SecuritySection:
    scope: Scope = setting(
        Scope.ALL,
        "all: every packet between members is IPsec; migration: "
        "only tcp 12820/13333 (openMosix migration) and tyd",
    )
    ike_proposals: tuple[str, ...] = setting(
        (
            "aes128gcm16-prfsha256-x25519",
            "chacha20poly1305-prfsha256-x25519",
            "aes128gcm16-prfsha256-ecp256",
        ),
        "IKEv2 proposals in strongSwan syntax, most preferred first",
        pattern="proposal",
    )
    esp_proposals: tuple[str, ...] = setting(
        ("aes128gcm16-x25519", "chacha20poly1305-x25519", "aes128gcm16-ecp256"),
        "ESP proposals (with PFS group) in strongSwan syntax, most preferred first",
        pattern="proposal",
    )
    key_type: KeyType = setting(KeyType.ED25519, "key type of the cluster CA and node keys")
    cert_lifetime_days: int = setting(365, "lifetime of node certificates", min=1, max=3650)
    ca_lifetime_days: int = setting(3650, "lifetime of the cluster CA", min=30, max=36500)
    pki_dir: str = setting(
        "pki", "PKI state directory, relative to chaos.yaml; never commit it (it holds the CA key)"
    )
    rekey_minutes: int = setting(60, "CHILD_SA rekey time", min=5, max=1440)
    measured_boot: MeasuredBoot = setting(
        MeasuredBoot.OFF,
        "check each enrolling node's TPM quote and UEFI event log against "
        "the build's out/measured-reference.json (Secure Boot on, only this build's shim, "
        "GRUB, kernel, initrds and command line): off; audit (log and count deviations, "
        "enroll anyway); enforce (refuse them). Needs the Secure Boot boot path",
    )
    node_cert_hours: int = setting(
        16,
        "lifetime of the certificates the enrollment service "
        "issues to nodes at boot (the night plus a margin)",
        min=1,
        max=168,
    )
    tpm_registry: str = setting(
        "tpm-registry.yaml",
        "the TPM registry (node name -> EK hashes), relative to chaos.yaml; review and version it",
    )


@dataclass(frozen=True, kw_only=True)
class SecurityModel:
    """The security section's top-level chaos.yaml key."""

    security: SecuritySection = setting(SecuritySection(), "IPsec and PKI")
