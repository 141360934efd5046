"""TPM enrollment at boot, CRL fetch and renewal (overlays/enroll/: the units; the node's
client is chaosnode/enroll.py, the service builder/enroll/). It declares chaos.yaml's
`security:` (builder/security/model.py), which IPsec, the PKI and measured boot read too."""

from __future__ import annotations

from ..model import Cluster, Node
from ..security.model import SecurityModel
from ..views import NodeView, enroll_url
from .feature import Feature, Fields


def fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    return {
        "enroll_url": enroll_url(cluster),  # "" when serve.address is not set
        "key_type": cluster.section(SecurityModel).security.key_type.value,
        "attestation": node.attestation.value,  # how chaos-enroll proves this machine
    }


def packages(cluster: Cluster) -> tuple[str, ...]:
    # the node proves its machine with its TPM 2.0 (chaosnode.tpm through tpm2-pytss over
    # /dev/tpmrm0) and makes its key and CSR with python3-cryptography
    return ("python3-tpm2-pytss", "libtss2-tcti-device0", "python3-cryptography")


FEATURE = Feature(
    name="enroll",
    fields=fields,
    units=("chaos-enroll.service", "chaos-crl.timer", "chaos-renew.timer"),
    packages=packages,
    model=SecurityModel,  # security:, after network: in the reference
    model_after="network",
)
