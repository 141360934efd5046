"""Self-certifying member records: a member speaks only for itself.

Every map entry travels signed by the member's own node key, with the member's certificate
(tyd.codec carries them). A receiver accepts an entry about X only when

- the certificate chains to the cluster CA, is valid now and is not on the CRL;
- it names X (DNS SAN) at X's address (IP SAN), the entry's fingerprint is its own, the
  address is in the cluster subnet and, with a roster (chaos.yaml's nodes), X is listed
  there at that address;
- X's signature over the entry's exact bytes verifies with that certificate's key;
- the entry is fresh: signed no longer than `max_age` ago and not ahead of our clock by
  more than the tolerated skew; its epoch (the member's start time) is not in the future.

So nobody but X can make a fresher heartbeat, an epoch, a move or a LEAVE for X, and a
recorded entry cannot be replayed once its member's tombstone is gone (see Freshness).
Verifying is cached: a certificate once per fingerprint, a signature once per record.
A heartbeat (tyd.member.Beat) is checked with the key of the member's current record:
the same incarnation, a signature under its own domain, the same freshness rules.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from chaosnode.signature import ca_signed

from . import codec
from .errors import TydError
from .member import Accusation, Beat, Member, Proof

DOMAIN = b"tyd-record-v2\0"  # a record signature can never be taken for another signature
BEAT_DOMAIN = b"tyd-beat-v1\0"  # nor a heartbeat's for a record's
ACCUSE_DOMAIN = b"tyd-suspect-v1\0"  # nor an accusation's for either
CERT_CACHE = 4096
SIGNATURE_CACHE = 16384
WallClock = Callable[[], float]


class RecordError(TydError):
    """An entry that is not what its member signed (forged) or no longer current (stale)."""

    def __init__(self, reason: str, detail: str, stale: bool = False) -> None:
        self.reason = reason
        self.stale = stale
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Freshness:
    """How old or early a record may be, from the tolerated clock skew S between nodes and
    the removal time R: accepted when signed within max_age = R + 2S, and tombstones are
    kept for R + 3S. A recorded entry of a member that has gone silent is thus always
    older than max_age by the time its tombstone is purged (as long as the clocks differ
    by less than S): a replay after that is refused as stale, during it as not newer."""

    skew_seconds: float
    remove_after_seconds: float

    @property
    def max_age_seconds(self) -> float:
        return self.remove_after_seconds + 2 * self.skew_seconds

    @property
    def tombstone_seconds(self) -> float:
        return self.remove_after_seconds + 3 * self.skew_seconds


@dataclass(frozen=True)
class Trust:
    """What records are checked against: the cluster, its CA and CRL, where members live."""

    cluster: str
    ca: x509.Certificate
    revoked: frozenset[int]
    subnet: ipaddress.IPv4Network
    roster: Mapping[str, ipaddress.IPv4Address] | None
    freshness: Freshness


@dataclass(frozen=True)
class _CertFacts:
    names: frozenset[str]
    addresses: frozenset[ipaddress.IPv4Address]
    not_before: float
    not_after: float
    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def load_trust(
    cluster: str,
    ca_path: Path,
    crl_path: Path,
    subnet: ipaddress.IPv4Network,
    roster: Mapping[str, ipaddress.IPv4Address] | None,
    freshness: Freshness,
) -> Trust:
    """Read the CA and the CRL (which must be the CA's) from disk."""
    try:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TydError(f"tls.ca: cannot load {ca_path}: {exc}") from None
    try:
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TydError(f"tls.crl: cannot load {crl_path}: {exc}") from None
    if crl.issuer != ca.subject or not ca_signed(
        ca, crl.signature, crl.tbs_certlist_bytes, crl.signature_hash_algorithm
    ):
        raise TydError(f"tls.crl: {crl_path} is not signed by the cluster CA")
    revoked = frozenset(r.serial_number for r in crl)
    return Trust(cluster, ca, revoked, subnet, roster, freshness)


class Signer:
    """Signs this node's own entries with its node key (Ed25519 or ECDSA P-256)."""

    def __init__(
        self, cluster: str, key_path: Path, cert_der: bytes, wall: WallClock = time.time
    ) -> None:
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise TydError(f"tls.key: cannot load {key_path}: {exc}") from None
        if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
            raise TydError(f"tls.key: {key_path} is neither Ed25519 nor ECDSA")
        self._key = key
        self._cluster = cluster
        self._cert = cert_der
        self._wall = wall
        self.fingerprint = hashlib.sha256(cert_der).hexdigest()

    def __call__(self, m: Member) -> Member:
        m = dataclasses.replace(m, fingerprint=self.fingerprint, stamp=int(self._wall() * 1000))
        body = codec.body_bytes(self._cluster, m)
        signature = self._sign(DOMAIN + body)
        return dataclasses.replace(m, proof=Proof(self._cluster, body, signature, self._cert))

    def beat(self, m: Member, count: int) -> Beat:
        """Our heartbeat number `count` in the incarnation of `m`."""
        b = Beat(m.name, m.incarnation, count, int(self._wall() * 1000))
        return dataclasses.replace(
            b, signature=self._sign(BEAT_DOMAIN + codec.beat_bytes(self._cluster, b))
        )

    def accuse(self, me: Member, target: Member) -> Accusation:
        """Our signed word that `target`, at its current record, failed our probes."""
        a = Accusation(
            target.name, target.incarnation, target.heartbeat, me.name, int(self._wall() * 1000)
        )
        return dataclasses.replace(
            a, signature=self._sign(ACCUSE_DOMAIN + codec.accusation_bytes(self._cluster, a))
        )

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))


class Verifier:
    """Accepts an entry only as its member signed it (see the module docstring)."""

    def __init__(self, trust: Trust, wall: WallClock = time.time) -> None:
        self.trust = trust
        self._wall = wall
        self._certs: collections.OrderedDict[str, _CertFacts | RecordError] = (
            collections.OrderedDict()
        )
        self._signatures: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._ders: collections.OrderedDict[str, bytes] = collections.OrderedDict()

    def cert_of(self, fingerprint: str) -> bytes:
        """The DER of a certificate met in an accepted record (b"" if none): digest gossip
        sends each certificate once per receiver, records then travel without it."""
        return self._ders.get(fingerprint, b"")

    def verify_beat(self, b: Beat, m: Member) -> Beat:
        """Return b if member m (its current, verified record) signed it, of m's current
        incarnation, and it is fresh; raise RecordError otherwise."""
        if b.name != m.name or b.incarnation != m.incarnation:
            raise RecordError("beat_mismatch", f"heartbeat of {b.name} is not of its record")
        data = BEAT_DOMAIN + codec.beat_bytes(self.trust.cluster, b)
        self._check_own(m, data, b.signature, f"heartbeat of {b.name}", b.stamp)
        return b

    def verify_accusation(self, a: Accusation, accuser: Member) -> Accusation:
        """Return a if `accuser` (its current, verified record) signed it and it is fresh:
        it is then the accuser's word, which the target can refute; never a death."""
        if a.accuser != accuser.name:
            raise RecordError("accusation_mismatch", f"accusation by {a.accuser} is not of it")
        if a.accuser == a.target:
            raise RecordError("accusation_mismatch", f"{a.accuser} accuses itself")
        data = ACCUSE_DOMAIN + codec.accusation_bytes(self.trust.cluster, a)
        self._check_own(accuser, data, a.signature, f"accusation of {a.target}", a.stamp)
        return a

    def _check_own(self, m: Member, data: bytes, signature: bytes, what: str, stamp: int) -> None:
        """A small statement (no certificate of its own) signed with the key of m's record."""
        p = m.proof
        if p is None or not p.cert:
            raise RecordError("beat_mismatch", f"{what}: {m.name} has no verified record")
        facts = self._cert(m.fingerprint, p.cert)
        now = self._wall()
        if not facts.not_before <= now <= facts.not_after:
            raise RecordError("expired", f"certificate of {m.name} is not valid now")
        try:
            if isinstance(facts.key, ed25519.Ed25519PublicKey):
                facts.key.verify(signature, data)
            else:
                facts.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise RecordError("bad_signature", f"{what} is not signed by {m.name}'s key") from None
        self._check_age(m.name, stamp, now)

    def verify(self, m: Member) -> Member:
        """Return m if it is authentic and current; raise RecordError otherwise."""
        t, p = self.trust, m.proof
        if p is None:
            raise RecordError("unsigned", f"entry of {m.name} carries no signature")
        if p.cluster != t.cluster:
            raise RecordError("other_cluster", f"entry of {m.name} is of cluster {p.cluster!r}")
        if m.address not in t.subnet:
            raise RecordError("outside_subnet", f"{m.name} at {m.address} is outside {t.subnet}")
        if t.roster is not None and t.roster.get(m.name) != m.address:
            listed = t.roster.get(m.name)
            raise RecordError(
                "not_in_roster",
                f"{m.name} at {m.address}: chaos.yaml has "
                + (f"it at {listed}" if listed else "no such node"),
            )
        fingerprint = hashlib.sha256(p.cert).hexdigest()
        facts = self._cert(fingerprint, p.cert)
        now = self._wall()
        if not facts.not_before <= now <= facts.not_after:
            raise RecordError("expired", f"certificate of {m.name} is not valid now")
        if m.fingerprint != fingerprint:
            raise RecordError("cert_mismatch", f"entry of {m.name} names another certificate")
        if m.name not in facts.names or m.address not in facts.addresses:
            raise RecordError(
                "cert_mismatch",
                f"{m.name} at {m.address} is not the node its "
                f"certificate names ({', '.join(sorted(facts.names))})",
            )
        self._check_signature(m.name, facts, p)
        self._check_fresh(m, now)
        self._ders[fingerprint] = p.cert
        self._ders.move_to_end(fingerprint)
        if len(self._ders) > CERT_CACHE:
            self._ders.popitem(last=False)
        return m

    def _cert(self, fingerprint: str, der: bytes) -> _CertFacts:
        cached = self._certs.get(fingerprint)
        if cached is None:
            try:
                cached = self._read_cert(der)
            except RecordError as exc:
                cached = exc
            self._certs[fingerprint] = cached
            if len(self._certs) > CERT_CACHE:
                self._certs.popitem(last=False)
        if isinstance(cached, RecordError):
            raise cached
        return cached

    def _read_cert(self, der: bytes) -> _CertFacts:
        t = self.trust
        c = parse_cert(der)
        if c.issuer != t.ca.subject or not ca_signed(t.ca, c.signature, c.tbs, c.hash_algorithm):
            raise RecordError("bad_cert", "certificate not signed by the cluster CA")
        if c.serial in t.revoked:
            raise RecordError("revoked", f"certificate {c.serial:x} is revoked")
        if not isinstance(c.key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
            raise RecordError("bad_cert", "node key is neither Ed25519 nor ECDSA")
        return _CertFacts(c.names, c.addresses, c.not_before, c.not_after, c.key)

    def _check_signature(self, name: str, facts: _CertFacts, p: Proof) -> None:
        digest = hashlib.sha256(p.signature + p.body + p.cert).digest()
        if digest in self._signatures:
            self._signatures.move_to_end(digest)
            return
        try:
            if isinstance(facts.key, ed25519.Ed25519PublicKey):
                facts.key.verify(p.signature, DOMAIN + p.body)
            else:
                facts.key.verify(p.signature, DOMAIN + p.body, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise RecordError(
                "bad_signature", f"entry of {name} is not signed by {name}'s key"
            ) from None
        self._signatures[digest] = None
        if len(self._signatures) > SIGNATURE_CACHE:
            self._signatures.popitem(last=False)

    def _check_fresh(self, m: Member, now: float) -> None:
        f = self.trust.freshness
        self._check_age(m.name, m.stamp, now)
        if m.incarnation / 1000 - now > f.skew_seconds:
            raise RecordError("future_epoch", f"{m.name}'s epoch {m.incarnation} is in the future")

    def _check_age(self, name: str, stamp: int, now: float) -> None:
        f = self.trust.freshness
        age = now - stamp / 1000
        if age > f.max_age_seconds:
            raise RecordError(
                "stale",
                f"entry of {name} was signed {age:.0f}s ago (more "
                f"than {f.max_age_seconds:.0f}s: replayed, or its clock is "
                "behind ours)",
                stale=True,
            )
        if -age > f.skew_seconds:
            raise RecordError(
                "future",
                f"entry of {name} is signed {-age:.0f}s ahead of "
                "our clock (clocks differ more than the tolerated skew)",
            )


@dataclass(frozen=True)
class CertClaims:
    """What a certificate says, read but not yet believed (Verifier checks it)."""

    issuer: x509.Name
    serial: int
    tbs: bytes
    signature: bytes
    hash_algorithm: hashes.HashAlgorithm | None
    names: frozenset[str]
    addresses: frozenset[ipaddress.IPv4Address]
    not_before: float
    not_after: float
    key: object


def parse_cert(der: bytes) -> CertClaims:
    """The one place tyd reads a certificate from the wire. cryptography parses lazily and
    raises whatever its parser met (InvalidVersion, DuplicateExtension, UnsupportedAlgorithm,
    ValueError, ... and other types in other versions): every field is read here, and any
    failure of the parser on these bytes is the refusal `bad_cert`, never an exception
    that escapes into a join or a serve loop."""
    try:
        cert = x509.load_der_x509_certificate(der)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        before, after = _validity(cert)
        return CertClaims(
            cert.issuer,
            cert.serial_number,
            cert.tbs_certificate_bytes,
            cert.signature,
            cert.signature_hash_algorithm,
            frozenset(sans.get_values_for_type(x509.DNSName)),
            frozenset(
                a
                for a in sans.get_values_for_type(x509.IPAddress)
                if isinstance(a, ipaddress.IPv4Address)
            ),
            before,
            after,
            cert.public_key(),
        )
    except Exception as exc:  # noqa: BLE001 - third-party parser on hostile bytes: see above
        raise RecordError(
            "bad_cert", f"unreadable certificate: {type(exc).__name__}: {str(exc)[:120]}"
        ) from None


def _validity(cert: x509.Certificate) -> tuple[float, float]:
    """not_before and not_after as POSIX times (cryptography 38, the node's, has no *_utc)."""
    before = getattr(cert, "not_valid_before_utc", None)
    after = getattr(cert, "not_valid_after_utc", None)
    if before is None or after is None:
        before = cert.not_valid_before.replace(tzinfo=dt.UTC)
        after = cert.not_valid_after.replace(tzinfo=dt.UTC)
    return before.timestamp(), after.timestamp()
