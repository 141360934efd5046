"""chaos-enroll.service: enroll this node with the public settings chaos-build rendered for
it (etc/chaos/node.json: name, address, key type, attestation, the enrollment service's URL).

    python3 -I -m chaosnode.bootenroll
"""

from __future__ import annotations

from pathlib import Path

from chaosnode import enroll, paths
from chaosnode.console import console
from chaosnode.contract.node import NodeSettings

NOT_CONFIGURED = (
    "CHAOS: no enrollment service is configured for this cluster (serve.address "
    "is null in chaos.yaml): this node gets no certificate and joins nothing"
)


def enroll_argv(node: NodeSettings) -> list[str]:
    """The enrollment client's command line for these node settings."""
    return [
        "--url",
        node.enroll_url,
        "--ca",
        paths.CA_CERT_PATH,
        "--node",
        node.name,
        "--address",
        node.address,
        "--key-type",
        node.key_type,
        "--attestation",
        node.attestation,
        "--key-out",
        paths.NODE_KEY_PATH,
        "--cert-out",
        paths.NODE_CERT_PATH,
        "--crl-out",
        paths.CRL_PATH,
        "--munge-key-out",
        paths.MUNGE_KEY,
        "--refusal-file",
        paths.ENROLL_REFUSED,
    ]


def main(node_json: Path = Path(paths.NODE_JSON)) -> int:
    node = NodeSettings.loads(node_json.read_text())
    if not node.enroll_url:
        console(NOT_CONFIGURED)
        return 1
    rc = enroll.main(enroll_argv(node))
    if rc == 0:
        how = (
            "approved by an admin (no TPM)"
            if node.attestation == "approval"
            else "attested by its TPM"
        )
        console(
            f"CHAOS: node {node.name} enrolled: certificate for a key made on this machine, {how}"
        )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
