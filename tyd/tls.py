"""Mutual TLS 1.3 with the cluster CA and CRL, and the check that a peer is who it claims.

Python's `ssl` verifies the chain, the validity dates and (with VERIFY_CRL_CHECK_LEAF)
revocation; this module adds the cluster rule: the name and address a peer claims must be
SANs of its certificate, and the fingerprint must match the map entry when we have one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from .config import TlsPaths
from .errors import IdentityError, TydError

PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def _context(paths: TlsPaths, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # we check name and address SANs ourselves
    ctx.verify_mode = ssl.CERT_REQUIRED
    for what, path in (("tls.ca", paths.ca), ("tls.crl", paths.crl)):
        try:
            ctx.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise TydError(f"{what}: cannot load {path}: {exc}") from None
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
    try:
        ctx.load_cert_chain(str(paths.cert), str(paths.key))
    except (OSError, ssl.SSLError) as exc:
        raise TydError(f"tls.cert/tls.key: cannot load {paths.cert} / {paths.key}: {exc}") from None
    return ctx


def server_context(paths: TlsPaths) -> ssl.SSLContext:
    return _context(paths, server=True)


def client_context(paths: TlsPaths) -> ssl.SSLContext:
    return _context(paths, server=False)


def der_fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate, hex: the same value chaos-build's PKI reports."""
    return hashlib.sha256(der).hexdigest()


def pem_cert_der(path: Path) -> bytes:
    """The first certificate in a PEM file (our own node certificate), as DER."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TydError(f"tls.cert: cannot read {path}: {exc.strerror}") from None
    found = PEM_CERT.search(data)
    if not found:
        raise TydError(f"tls.cert: {path} holds no PEM certificate")
    return ssl.PEM_cert_to_DER_cert(found.group().decode("ascii"))


def pem_fingerprint(path: Path) -> str:
    """Fingerprint of the first certificate in a PEM file."""
    return der_fingerprint(pem_cert_der(path))


@dataclass(frozen=True)
class PeerCert:
    """What the verified certificate of the other end asserts."""

    fingerprint: str
    dns_names: frozenset[str]
    addresses: frozenset[ipaddress.IPv4Address]


def peer_cert(obj: ssl.SSLObject | None) -> PeerCert:
    if obj is None:
        raise IdentityError("no TLS session")
    der = obj.getpeercert(binary_form=True)
    info = obj.getpeercert()
    if not der or not info:
        raise IdentityError("peer presented no certificate")
    dns, ips = set(), set()
    for entry in info.get("subjectAltName", ()):
        kind, value = entry[0], entry[1]
        if kind == "DNS":
            dns.add(str(value))
        elif kind == "IP Address":
            try:
                ips.add(ipaddress.IPv4Address(str(value).strip()))
            except ValueError:
                continue
    return PeerCert(der_fingerprint(der), frozenset(dns), frozenset(ips))


def check_identity(
    cert: PeerCert, name: str | None, address: ipaddress.IPv4Address, fingerprint: str | None = None
) -> None:
    """Raise IdentityError unless the certificate names this node at this address."""
    if name is not None and name not in cert.dns_names:
        raise IdentityError(
            f"claims name {name} but its certificate names {sorted(cert.dns_names)}"
        )
    if address not in cert.addresses:
        raise IdentityError(
            f"claims address {address} but its certificate holds "
            f"{sorted(str(a) for a in cert.addresses)}"
        )
    if fingerprint is not None and fingerprint != cert.fingerprint:
        raise IdentityError(
            f"certificate {cert.fingerprint[:16]}... is not the one in the "
            f"map ({fingerprint[:16]}...)"
        )
