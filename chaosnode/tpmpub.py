"""TPM public areas, shared by the node and the enrollment service; no TPM needed.

Runs with python3-tpm2-pytss 1.2.0 (the node image) and tpm2-pytss 3.x (the builder's venv):
only the marshalled structure types are used here, never ESAPI.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.hazmat.primitives import serialization
from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PUBLIC

# A restricted signing key made inside this TPM that can never leave it: what an AK must be.
AK_REQUIRED: Final = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)
AK_ATTRIBUTE_NAMES: Final = {
    TPMA_OBJECT.FIXEDTPM: "fixedTPM",
    TPMA_OBJECT.FIXEDPARENT: "fixedParent",
    TPMA_OBJECT.SENSITIVEDATAORIGIN: "sensitiveDataOrigin",
    TPMA_OBJECT.RESTRICTED: "restricted",
    TPMA_OBJECT.SIGN_ENCRYPT: "sign",
}


class PublicAreaError(ValueError):
    """A marshalled public area that is malformed or not what it must be."""


def parse_public(data: bytes, what: str) -> TPM2B_PUBLIC:
    """Unmarshal a TPM2B_PUBLIC, refusing trailing bytes and unknown key types."""
    try:
        public, used = TPM2B_PUBLIC.unmarshal(data)
    except Exception as exc:  # the C unmarshaller raises several exception types
        raise PublicAreaError(f"{what} is not a marshalled TPM2B_PUBLIC ({exc})") from None
    if used != len(data):
        raise PublicAreaError(f"{what} has {len(data) - used} trailing bytes")
    if public.publicArea.type not in (TPM2_ALG.ECC, TPM2_ALG.RSA):
        raise PublicAreaError(f"{what} is neither an ECC nor an RSA key")
    if public.publicArea.nameAlg != TPM2_ALG.SHA256:
        raise PublicAreaError(f"{what} must use nameAlg sha256")
    return public


def public_der(public: TPM2B_PUBLIC, what: str = "key") -> bytes:
    """The key as DER SubjectPublicKeyInfo."""
    try:
        der: bytes = public.publicArea.to_der()
        # normalise through cryptography so both pytss versions hash the same bytes
        key = serialization.load_der_public_key(der)
    except Exception as exc:  # an ECC point off the curve, an odd RSA modulus, ...
        raise PublicAreaError(f"{what} holds no usable public key ({exc})") from None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def ek_hash(ek_public: bytes) -> str:
    """What the registry stores for a machine: sha256 of its EK's DER SubjectPublicKeyInfo."""
    der = public_der(parse_public(ek_public, "EK public"), "EK public")
    return "sha256:" + hashlib.sha256(der).hexdigest()


def ak_problems(ak: TPM2B_PUBLIC) -> list[str]:
    """Why this public area is not an attestation key (empty: it is one)."""
    attrs = int(ak.publicArea.objectAttributes)
    missing = [name for bit, name in AK_ATTRIBUTE_NAMES.items() if not attrs & int(bit)]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    if attrs & int(TPMA_OBJECT.DECRYPT):
        problems.append("must not have decrypt")
    return problems


def ek_problems(ek: TPM2B_PUBLIC) -> list[str]:
    """Why this public area cannot be an endorsement key (a restricted decryption key)."""
    attrs = int(ek.publicArea.objectAttributes)
    problems = [
        f"missing {name}"
        for bit, name in (
            (TPMA_OBJECT.RESTRICTED, "restricted"),
            (TPMA_OBJECT.DECRYPT, "decrypt"),
            (TPMA_OBJECT.FIXEDTPM, "fixedTPM"),
        )
        if not attrs & int(bit)
    ]
    if attrs & int(TPMA_OBJECT.SIGN_ENCRYPT):
        problems.append("must not have sign")
    return problems


def name_of(public: TPM2B_PUBLIC) -> bytes:
    """The TPM name: nameAlg || H(TPMT_PUBLIC), computed here, never taken from the client."""
    area = public.publicArea.marshal()
    return int(TPM2_ALG.SHA256).to_bytes(2, "big") + hashlib.sha256(area).digest()
