"""The cluster PKI: one CA, one certificate per node, a CRL.

Layout of the state directory (beside chaos.yaml, git-ignored):
    ca.key ca.pem               the cluster CA (the key is never overwritten)
    nodes/NAME.key NAME.pem     node identities (SANs: DNS name, short name, address)
    revoked.json crl.pem        revocations and the CRL every node gets
Keys are written 0600. The clock is always passed in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chaosnode.files import atomic_write

from . import mungekey
from .errors import PkiError
from .model import Cluster, KeyType, Node
from .security.model import SecurityModel
from .slurm.model import SlurmModel
from .views import fqdn

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class Identity:
    """What a node certificate asserts."""

    name: str
    fqdn: str
    address: ipaddress.IPv4Address


@dataclass(frozen=True)
class CertInfo:
    name: str
    serial: int
    not_after: dt.datetime
    fingerprint: str
    revoked: bool


class PkiPaths:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca_key = root / "ca.key"
        self.ca_cert = root / "ca.pem"
        self.nodes = root / "nodes"
        self.revoked = root / "revoked.json"
        self.crl = root / "crl.pem"
        self.service_key = root / "enroll-service.key"
        self.service_cert = root / "enroll-service.pem"
        self.enrolled = root / "enrolled"

    def node_key(self, name: str) -> Path:
        return self.nodes / f"{name}.key"

    def node_cert(self, name: str) -> Path:
        return self.nodes / f"{name}.pem"


def new_key(key_type: KeyType) -> PrivateKey:
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _write_secret(path: Path, data: bytes) -> None:
    """Write a private key 0600 from the first byte on; refuse to replace one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def make_ca(cluster: str, key: PrivateKey, now: dt.datetime, days: int) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster} cluster CA"),
        ]
    )
    pub = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(key, _hash_for(key))
    )


def _leaf_cert(
    cluster: str,
    common_name: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    key: PrivateKey | PublicKey,
    ca_key: PrivateKey,
    ca: x509.Certificate,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    """The one end-entity profile of the cluster CA (nodes and the enrollment service)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    pub = key.public_key() if isinstance(key, PrivateKey) else key
    not_after = min(now + lifetime, ca.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, _hash_for(ca_key))
    )


def make_node_cert(
    ident: Identity,
    cluster: str,
    key: PrivateKey | PublicKey,
    ca_key: PrivateKey,
    ca: x509.Certificate,
    now: dt.datetime,
    days: float,
) -> x509.Certificate:
    """A node certificate for `key` (the node's private key, or just its public half when
    the key never leaves the node: enrollment)."""
    sans: list[x509.GeneralName] = [
        x509.DNSName(ident.fqdn),
        x509.DNSName(ident.name),
        x509.IPAddress(ident.address),
    ]
    return _leaf_cert(
        cluster,
        ident.fqdn,
        sans,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        key,
        ca_key,
        ca,
        now,
        dt.timedelta(days=days),
    )


def make_service_cert(
    cluster: str,
    address: ipaddress.IPv4Address,
    key: PrivateKey,
    ca_key: PrivateKey,
    ca: x509.Certificate,
    now: dt.datetime,
    days: float,
) -> x509.Certificate:
    """The enrollment service's TLS certificate: server auth only, for its IP address."""
    return _leaf_cert(
        cluster,
        f"{cluster} enrollment service {address}",
        [x509.IPAddress(address)],
        [ExtendedKeyUsageOID.SERVER_AUTH],
        key,
        ca_key,
        ca,
        now,
        dt.timedelta(days=days),
    )


def _load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise PkiError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class Pki:
    """The cluster PKI in one state directory."""

    def __init__(self, root: Path, key_type: KeyType = KeyType.ED25519) -> None:
        self.paths = PkiPaths(root)
        self.key_type = key_type

    # -- CA ---------------------------------------------------------------
    def has_ca(self) -> bool:
        return self.paths.ca_key.exists()

    def init_ca(self, cluster: str, now: dt.datetime, days: int) -> bool:
        """Create the CA unless one exists. Returns True when it created one."""
        if self.paths.ca_key.exists():
            if not self.paths.ca_cert.exists():
                raise PkiError(
                    f"{self.paths.ca_key} exists without {self.paths.ca_cert}; "
                    "restore ca.pem from backup (the key is never regenerated)"
                )
            return False
        if self.paths.ca_cert.exists():
            raise PkiError(
                f"{self.paths.ca_cert} exists without its key {self.paths.ca_key}; "
                "restore the key from backup or move the PKI directory aside"
            )
        key = new_key(self.key_type)
        cert = make_ca(cluster, key, now, days)
        _write_secret(self.paths.ca_key, key_pem(key))
        atomic_write(self.paths.ca_cert, cert_pem(cert))
        self._write_revoked({})
        self.write_crl(now, days=days)
        return True

    def ca(self) -> tuple[PrivateKey, x509.Certificate]:
        if not self.has_ca():
            raise PkiError(f"no cluster CA in {self.paths.root}: run `chaos-build pki init`")
        return _load_key(self.paths.ca_key), _load_cert(self.paths.ca_cert)

    def ca_cert(self) -> x509.Certificate:
        return self.ca()[1]

    # -- nodes ------------------------------------------------------------
    def issue(
        self, ident: Identity, cluster: str, now: dt.datetime, days: int, force: bool = False
    ) -> bool:
        """Issue a node certificate. Idempotent: keeps a current one that still matches
        the node (same SANs, same CA, not revoked, valid beyond 7 days)."""
        ca_key, ca = self.ca()
        cert_path, key_path = self.paths.node_cert(ident.name), self.paths.node_key(ident.name)
        if (
            not force
            and cert_path.exists()
            and key_path.exists()
            and self._still_good(_load_cert(cert_path), ident, ca, now)
        ):
            return False
        if key_path.exists():
            key = _load_key(key_path)
            if key.public_key() in self._revoked_keys(ident.name):
                raise PkiError(
                    f"{key_path} is the key of a revoked certificate of "
                    f"{ident.name}: delete it and run `chaos-build pki issue "
                    f"{ident.name}` again for a new key"
                )
        else:
            key = new_key(self.key_type)
            _write_secret(key_path, key_pem(key))
        cert = make_node_cert(ident, cluster, key, ca_key, ca, now, days)
        atomic_write(cert_path, cert_pem(cert))
        return True

    def _revoked_keys(self, name: str) -> list[object]:
        return [
            _load_cert(p).public_key()
            for folder in (self.paths.nodes, self.paths.enrolled)
            for p in folder.glob(f"{name}.*.revoked")
        ]

    def _still_good(
        self, cert: x509.Certificate, ident: Identity, ca: x509.Certificate, now: dt.datetime
    ) -> bool:
        if cert.issuer != ca.subject or cert.serial_number in self._revoked_serials():
            return False
        if cert.not_valid_after_utc - now < dt.timedelta(days=7):
            return False
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return set(sans_of(cert)) == {ident.fqdn, ident.name, str(ident.address)}

    def node_cert(self, name: str) -> x509.Certificate:
        path = self.paths.node_cert(name)
        if not path.exists():
            raise PkiError(
                f"no certificate for node {name!r} in {self.paths.nodes}: "
                f"run `chaos-build pki issue {name}` (or `pki issue --all`)"
            )
        return _load_cert(path)

    def node_files(self, name: str) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a node, for rendering."""
        self.node_cert(name)
        return self.paths.node_cert(name).read_bytes(), self.paths.node_key(name).read_bytes()

    def service_identity(
        self, cluster: str, address: ipaddress.IPv4Address, now: dt.datetime, days: int = 30
    ) -> tuple[Path, Path]:
        """(certificate, key) of the enrollment service at `address`: kept while it is for
        this address, from this CA and valid beyond a day; reissued otherwise. The key is
        made once (0600) and kept; the CA key is only ever read."""
        ca_key, ca = self.ca()
        cert_path, key_path = self.paths.service_cert, self.paths.service_key
        if key_path.exists():
            key = _load_key(key_path)
        else:
            key = new_key(self.key_type)
            _write_secret(key_path, key_pem(key))
        if cert_path.exists():
            cert = _load_cert(cert_path)
            if (
                cert.issuer == ca.subject
                and sans_of(cert) == [str(address)]
                and cert.public_key() == key.public_key()
                and cert.not_valid_after_utc - now > dt.timedelta(days=1)
            ):
                return cert_path, key_path
        atomic_write(
            cert_path, cert_pem(make_service_cert(cluster, address, key, ca_key, ca, now, days))
        )
        return cert_path, key_path

    def record_enrolled(self, name: str, cert: x509.Certificate) -> None:
        """Keep the last certificate enrollment issued to a node (public; for audits)."""
        atomic_write(self.paths.enrolled / f"{name}.pem", cert_pem(cert))

    def is_revoked(self, name: str) -> bool:
        """A node whose certificate was revoked and that has not been re-issued since."""
        names = {entry.get("name") for entry in self._read_revoked().values()}
        return name in names and not self.paths.node_cert(name).exists()

    def revoke(self, name: str, now: dt.datetime, crl_days: int) -> list[int]:
        """Revoke every certificate the node holds: the one enrollment issued it tonight and
        one made here by `pki issue`; both serials go on the CRL. Returns the serials."""
        held = [
            path
            for path in (self.paths.node_cert(name), self.paths.enrolled / f"{name}.pem")
            if path.exists()
        ]
        if not held:
            raise PkiError(
                f"{name} holds no certificate in {self.paths.root} (it never "
                "enrolled): nothing to revoke"
            )
        revoked = self._read_revoked()
        serials = []
        for path in held:
            cert = _load_cert(path)
            revoked[str(cert.serial_number)] = {"name": name, "date": now.isoformat()}
            path.rename(path.parent / f"{name}.{cert.serial_number}.revoked")
            serials.append(cert.serial_number)
        self._write_revoked(revoked)
        # The key goes with its certificate: `pki issue` after a revocation makes a new key,
        # never a new certificate for the revoked one.
        self.paths.node_key(name).unlink(missing_ok=True)
        self.write_crl(now, days=crl_days)
        return serials

    def write_crl(self, now: dt.datetime, days: int) -> None:
        ca_key, ca = self.ca()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=days))
        )
        for serial, entry in sorted(self._read_revoked().items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial))
                .revocation_date(dt.datetime.fromisoformat(entry["date"]))
                .build()
            )
        crl = builder.sign(ca_key, _hash_for(ca_key))
        atomic_write(self.paths.crl, crl.public_bytes(serialization.Encoding.PEM))

    def crl_pem(self) -> bytes:
        if not self.paths.crl.exists():
            raise PkiError(f"no CRL in {self.paths.root}: run `chaos-build pki init`")
        return self.paths.crl.read_bytes()

    def _read_revoked(self) -> dict[str, dict[str, str]]:
        if not self.paths.revoked.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(self.paths.revoked.read_text())
        return data

    def _write_revoked(self, data: dict[str, dict[str, str]]) -> None:
        atomic_write(self.paths.revoked, json.dumps(data, indent=1, sort_keys=True).encode())

    def _revoked_serials(self) -> set[int]:
        return {int(s) for s in self._read_revoked()}

    def certificates(self) -> list[CertInfo]:
        out = []
        revoked = self._revoked_serials()
        for path in sorted(self.paths.nodes.glob("*.pem")):
            cert = _load_cert(path)
            out.append(
                CertInfo(
                    path.stem,
                    cert.serial_number,
                    cert.not_valid_after_utc,
                    fingerprint(cert),
                    cert.serial_number in revoked,
                )
            )
        return out

    def expiry_warnings(self, now: dt.datetime, within_days: int = 7) -> list[str]:
        """Certificates, CA and CRL that expire soon (or did)."""
        warnings = []
        limit = now + dt.timedelta(days=within_days)
        if self.has_ca():
            ca = self.ca_cert()
            if ca.not_valid_after_utc <= limit:
                warnings.append(
                    f"cluster CA expires {ca.not_valid_after_utc:%Y-%m-%d}: the "
                    "whole cluster stops authenticating then; plan a new CA"
                )
            if self.paths.crl.exists():
                crl = x509.load_pem_x509_crl(self.paths.crl.read_bytes())
                nxt = crl.next_update_utc
                if nxt is not None and nxt <= limit:
                    warnings.append(f"CRL expires {nxt:%Y-%m-%d}: run `chaos-build pki crl`")
        for info in self.certificates():
            if not info.revoked and info.not_after <= limit:
                warnings.append(
                    f"node {info.name}: certificate expires "
                    f"{info.not_after:%Y-%m-%d}: run `chaos-build pki issue "
                    f"{info.name} --force`"
                )
        return warnings


def revoked_in_roster(cluster: Cluster, pki: Pki) -> list[str]:
    """What to do about nodes chaos.yaml still lists whose certificate was revoked: they
    would boot, be refused a certificate and never join."""
    return [
        f"node {n.name} is revoked (`pki revoke`): it will boot but gets no certificate "
        f"and cannot join. Remove it from chaos.yaml, or re-admit it with `chaos-build "
        f"pki issue {n.name}` (a new key; its revoked key is never certified again)"
        for n in cluster.nodes
        if pki.is_revoked(n.name)
    ]


def sans_of(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *ext.get_values_for_type(x509.DNSName),
        *(str(a) for a in ext.get_values_for_type(x509.IPAddress)),
    ]


# -- the cluster's PKI, as every caller (CLI, build, smoke, tests, bench) uses it ----------
def pki_at(cluster: Cluster, root: Path) -> Pki:
    """The cluster's PKI (its security.key_type) kept in root."""
    return Pki(root, cluster.section(SecurityModel).security.key_type)


def pki_for(cluster: Cluster, config: Path) -> Pki:
    """The PKI state directory of a cluster file (security.pki_dir, relative to the file)."""
    root = Path(cluster.section(SecurityModel).security.pki_dir)
    if not root.is_absolute():
        root = config.resolve().parent / root
    return pki_at(cluster, root)


def node_identity(cluster: Cluster, node: Node) -> Identity:
    return Identity(node.name, fqdn(cluster, node), node.address)


def ensure_ca(cluster: Cluster, pki: Pki, now: dt.datetime) -> bool:
    """The cluster CA (and its CRL), created once and never replaced; True when created.
    All a build needs: nodes make their own keys and enroll for certificates at boot.
    With a Slurm workload, also the cluster's munge key beside it (made once)."""
    created = pki.init_ca(
        cluster.cluster.name, now, cluster.section(SecurityModel).security.ca_lifetime_days
    )
    if cluster.section(SlurmModel).workload.slurm:
        mungekey.ensure(pki.paths.root)
    return created


def issue_all(cluster: Cluster, pki: Pki, now: dt.datetime) -> list[str]:
    """The CA (created once, never replaced) and a current certificate for every node;
    returns the names that got a new certificate."""
    sec = cluster.section(SecurityModel).security
    pki.init_ca(cluster.cluster.name, now, sec.ca_lifetime_days)
    return [
        n.name
        for n in cluster.nodes
        if pki.issue(node_identity(cluster, n), cluster.cluster.name, now, sec.cert_lifetime_days)
    ]
