"""Certificates that cryptography cannot parse, signed by the real cluster CA: the real DER
of a member certificate, taken apart and put back together with one field made impossible
(X.509 version 42, two SAN extensions, an unknown signature algorithm), then re-signed
(tests/der.py reads and writes the TLVs)."""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from der import Tlv, children, tlv

SEQUENCE = 0x30
VERSION_TAG = 0xA0  # [0] EXPLICIT Version
EXTENSIONS_TAG = 0xA3  # [3] EXPLICIT Extensions
OID_TAG = 0x06
BIT_STRING = 0x03
SAN_OID = bytes.fromhex("551d11")  # 2.5.29.17
UNKNOWN_OID = bytes.fromhex("2b0601040182e35d0101")  # 1.3.6.1.4.1.45533.1.1 (no such algorithm)


def _seq(items: list[Tlv]) -> bytes:
    return b"".join(tlv(t, c) for t, c in items)


def _resign(tbs: list[Tlv], algorithm: bytes, ca_key: ed25519.Ed25519PrivateKey) -> bytes:
    tbs_der = tlv(SEQUENCE, _seq(tbs))
    signature = tlv(BIT_STRING, b"\x00" + ca_key.sign(tbs_der))
    return tlv(SEQUENCE, tbs_der + algorithm + signature)


def _patched(
    der: bytes, ca_key: ed25519.Ed25519PrivateKey, change: Callable[[list[Tlv]], bytes | None]
) -> bytes:
    """Apply `change` to the TBSCertificate's fields (in place); it may return a new
    AlgorithmIdentifier for both the TBS and the outer certificate."""
    ((_, cert_body),) = children(der)
    tbs, algorithm, _ = children(cert_body)
    fields = children(tbs[1])
    new_algorithm = change(fields)
    outer = tlv(*algorithm) if new_algorithm is None else new_algorithm
    return _resign(fields, outer, ca_key)


def version_42(der: bytes, ca_key: ed25519.Ed25519PrivateKey) -> bytes:
    def change(fields: list[Tlv]) -> None:
        assert fields[0][0] == VERSION_TAG
        fields[0] = (VERSION_TAG, tlv(0x02, bytes([42])))

    return _patched(der, ca_key, change)


def two_sans(der: bytes, ca_key: ed25519.Ed25519PrivateKey) -> bytes:
    def change(fields: list[Tlv]) -> None:
        k = next(i for i, (t, _) in enumerate(fields) if t == EXTENSIONS_TAG)
        ((_, extensions),) = children(fields[k][1])
        items = children(extensions)
        san = next(e for e in items if children(e[1])[0] == (OID_TAG, SAN_OID))
        fields[k] = (EXTENSIONS_TAG, tlv(SEQUENCE, _seq([*items, san])))

    return _patched(der, ca_key, change)


def unknown_algorithm(der: bytes, ca_key: ed25519.Ed25519PrivateKey) -> bytes:
    """The CA's issuer name stays: only the signature algorithm is one nobody knows."""
    algorithm = tlv(SEQUENCE, tlv(OID_TAG, UNKNOWN_OID))

    def change(fields: list[Tlv]) -> bytes:
        assert fields[2][0] == SEQUENCE  # version, serial, signature (AlgorithmIdentifier)
        fields[2] = (SEQUENCE, tlv(OID_TAG, UNKNOWN_OID))
        return algorithm

    return _patched(der, ca_key, change)


def field_replaced(
    der: bytes, ca_key: ed25519.Ed25519PrivateKey, index: int, content: bytes
) -> bytes:
    """The certificate with TBSCertificate field `index` (mod their number) given other
    content under the same tag, re-signed by the CA: structure-aware fuzzing."""

    def change(fields: list[Tlv]) -> None:
        k = index % len(fields)
        fields[k] = (fields[k][0], content)

    return _patched(der, ca_key, change)


MALFORMED = {"version_42": version_42, "two_sans": two_sans, "unknown_algorithm": unknown_algorithm}


def malformed_certs(der: bytes, ca_key: object) -> dict[str, bytes]:
    """The three impossible certificates made from one real member certificate (DER)."""
    assert isinstance(ca_key, ed25519.Ed25519PrivateKey), "the test PKI is Ed25519"
    return {case: make(der, ca_key) for case, make in MALFORMED.items()}


def sanity(der: bytes) -> x509.Certificate:
    """What cryptography makes of an unpatched round trip (the writer's own check)."""
    return x509.load_der_x509_certificate(der)
