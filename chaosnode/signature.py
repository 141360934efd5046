"""Whether the cluster CA signed a certificate or CRL, checked by hand: bookworm's
cryptography 38 (the node's) has no Ed25519 in CRL.is_signature_valid and no
Certificate.verify_directly_issued_by."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


def ca_signed(
    ca: x509.Certificate, signature: bytes, tbs: bytes, hash_algorithm: hashes.HashAlgorithm | None
) -> bool:
    """True if the CA's key (Ed25519 or ECDSA, the cluster's key types) made signature over
    tbs; False for a bad signature or any other key type."""
    key = ca.public_key()
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, tbs)
        elif isinstance(key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
            key.verify(signature, tbs, ec.ECDSA(hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True
