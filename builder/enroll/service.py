"""The enrollment service: a node proves its machine by TPM credential activation and gets a
short-lived certificate for a key that never leaves it.

Layers: `Enrollment` here is the protocol logic (sessions, registry, CSR checks, signing;
clock passed in; callable from tests without a socket); server.py is the HTTPS edge.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from tpm2_pytss.types import TPM2B_NAME
from tpm2_pytss.utils import make_credential

from chaosnode import tpmpub
from chaosnode.enrollment import (
    NONCE_BYTES,
    SECRET_BYTES,
    ApprovalRequest,
    FinishRequest,
    FinishResponse,
    ProtocolError,
    StartRequest,
    StartResponse,
    boot_fingerprint,
    key_sha256,
    proof_matches,
)

from .. import mungekey
from ..errors import ChaosError
from ..measured.policy import BootCheck
from ..measured.reference import REFERENCE_FILE
from ..measured.verify import Evidence
from ..model import Attestation, Cluster
from ..night import cert_hours
from ..pki import Identity, Pki, make_node_cert
from ..security.model import SecurityModel
from .boots import APPROVAL_SECONDS, BOOTS_FILE, BootStore, Verdict
from .registry import PendingStore, Registry, load_registry

log = logging.getLogger("chaos.enroll")

Clock = Callable[[], dt.datetime]
SWEEP_EVERY: Final = 64


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class InvalidInput(ChaosError):
    """A setting or option the service cannot start with."""

    exit_code = 2


class Refused(ProtocolError):
    """A refusal that knows which node it concerns (for the request log)."""

    def __init__(self, code: str, reason: str, node: str = "-") -> None:
        super().__init__(code, reason)
        self.node = node


@dataclass(frozen=True)
class ServiceSettings:
    address: ipaddress.IPv4Address
    port: int
    session_seconds: float = 10.0  # how long a challenge may be answered
    max_sessions: int = 4096  # challenges in flight
    rate_per_second: float = 2.0  # per source address (a node needs 2 requests)
    burst: int = 10
    socket_timeout: float = 10.0  # per read/write; a slow client loses its connection
    # a request's total time from its first byte: a client dribbling one byte every few
    # seconds never trips the per-read timeout, and would hold its thread for good
    request_seconds: float = 20.0
    max_connections: int = 1024
    # checked before max_connections: one address cannot take the room members need
    max_connections_per_source: int = 8
    approval_seconds: float = APPROVAL_SECONDS  # how long an admin's approve-boot holds


@dataclass
class _Session:
    node: str
    source: str
    secret: bytes
    csr: x509.CertificateSigningRequest
    ek_hash: str
    expires: dt.datetime
    ak_public: bytes = b""  # measured boot: the AK activation proves, and its quote's nonce
    nonce: bytes = b""


@dataclass
class _Bucket:
    tokens: float
    at: dt.datetime


class RateLimiter:
    """A token bucket per source address; the table is bounded by sweeping full buckets."""

    def __init__(self, rate: float, burst: int, clock: Clock, max_sources: int = 65536) -> None:
        self.rate, self.burst, self.clock, self.max_sources = rate, burst, clock, max_sources
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def allow(self, source: str) -> bool:
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(source) or _Bucket(float(self.burst), now)
            elapsed = max(0.0, (now - bucket.at).total_seconds())
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.at = now
            self._buckets[source] = bucket
            if len(self._buckets) > self.max_sources:
                self._sweep(now)
            if bucket.tokens < 1:
                return False
            bucket.tokens -= 1
            return True

    def _sweep(self, now: dt.datetime) -> None:
        full = self.burst / self.rate if self.rate else 0
        for src, b in list(self._buckets.items()):
            if (now - b.at).total_seconds() >= full:
                del self._buckets[src]


@dataclass(frozen=True)
class CsrClaims:
    """What a CSR says, read but not yet believed (Enrollment._check_csr checks it)."""

    csr: x509.CertificateSigningRequest
    valid: bool  # its signature verifies with its own key
    names: list[str]  # subject common names
    asked: set[str]  # DNS and IP SANs
    other_sans: bool  # SANs of any other kind


def read_csr(pem: str, node: str) -> CsrClaims:
    """The one place the service reads a CSR. cryptography parses lazily and raises what its
    parser met (ValueError, DuplicateExtension, UnsupportedAlgorithm, ... by version), and
    a CSR's extensions are whatever its sender signed with its own key: every field is read
    here, and any parser failure is the refusal `bad_csr`, never a 500."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
        valid = csr.is_signature_valid
        csr.public_key()
        names = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return CsrClaims(csr, valid, names, set(), False)
        asked = {
            *san.get_values_for_type(x509.DNSName),
            *(str(a) for a in san.get_values_for_type(x509.IPAddress)),
        }
        return CsrClaims(csr, valid, names, asked, len(asked) != len(san))
    except Exception as exc:  # noqa: BLE001 - third-party parser on hostile bytes: see above
        raise Refused(
            "bad_csr", f"cannot parse the CSR ({type(exc).__name__}: {str(exc)[:120]})", node
        ) from None


@dataclass
class Enrollment:
    """The protocol logic. Thread-safe; the clock is passed in."""

    cluster: Cluster
    pki: Pki
    registry_path: Path
    pending: PendingStore
    settings: ServiceSettings
    clock: Clock = utc_now
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _used: dict[str, dt.datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _registry: tuple[float, Registry] | None = None
    _starts: int = 0
    boot_check: BootCheck | None = None  # security.measured_boot; open_service passes it

    def __post_init__(self) -> None:
        if self.boot_check is None:
            self.boot_check = BootCheck(
                self.cluster.section(SecurityModel).security.measured_boot,
                self.pki.paths.root.parent / "out" / REFERENCE_FILE,
            )
        self._ca_key, self._ca = self.pki.ca()  # read once; never written here
        self._ca_pem = self._ca.public_bytes(serialization.Encoding.PEM).decode()
        self.boots = BootStore(
            self.pki.paths.root / BOOTS_FILE, approval_seconds=self.settings.approval_seconds
        )
        self._munge_key = mungekey.for_cluster(self.cluster, self.pki.paths.root)

    # -- start ---------------------------------------------------------------
    def start(self, req: StartRequest, source: str) -> StartResponse:
        node = self._node(req.node)
        try:
            ek = tpmpub.parse_public(req.ek_public, "ek_public")
            ek_hash = tpmpub.ek_hash(req.ek_public)
            ak = tpmpub.parse_public(req.ak_public, "ak_public")
        except tpmpub.PublicAreaError as exc:
            raise Refused("malformed", str(exc), node.name) from None
        holder = self.registry().node_for(ek_hash)
        if holder is None:
            self.pending.record(ek_hash, node.name, req.macs, source, self.clock())
            raise Refused(
                "unregistered",
                f"this machine's TPM ({ek_hash}) is not registered; "
                f"recorded as pending; an admin approves it with `chaos-build enroll "
                f"approve {ek_hash} --node {node.name}`",
                node.name,
            )
        if holder != node.name:
            raise Refused(
                "unregistered",
                f"this machine's TPM ({ek_hash}) is registered for {holder}, not {node.name}",
                node.name,
            )
        problems = tpmpub.ek_problems(ek)
        if problems:
            raise Refused(
                "malformed",
                "ek_public is not an endorsement key: " + "; ".join(problems),
                node.name,
            )
        problems = tpmpub.ak_problems(ak)
        if problems:
            raise Refused(
                "bad_ak",
                "the AK is not a restricted signing key bound to the TPM: " + "; ".join(problems),
                node.name,
            )
        csr = self._check_csr(req.csr, node.name)
        secret = secrets.token_bytes(SECRET_BYTES)
        try:
            blob, encrypted = make_credential(ek, secret, TPM2B_NAME(tpmpub.name_of(ak)))
        except (ValueError, TypeError) as exc:  # odd symmetric or scheme in the EK template
            raise Refused(
                "malformed", f"ek_public cannot wrap a credential ({exc})", node.name
            ) from None
        session_id = secrets.token_urlsafe(24)
        assert self.boot_check is not None
        nonce = secrets.token_bytes(NONCE_BYTES) if self.boot_check.wanted(node) else b""
        now = self.clock()
        with self._lock:
            self._starts += 1
            if self._starts % SWEEP_EVERY == 0 or len(self._sessions) >= self.settings.max_sessions:
                self._sweep(now)
            if len(self._sessions) >= self.settings.max_sessions:
                raise Refused(
                    "busy", "too many enrollments in flight; retry in a few seconds", node.name
                )
            self._sessions[session_id] = _Session(
                node.name,
                source,
                secret,
                csr,
                ek_hash,
                now + dt.timedelta(seconds=self.settings.session_seconds),
                req.ak_public,
                nonce,
            )
        log.debug("challenge for %s (%s)", node.name, ek_hash)
        return StartResponse(
            session_id,
            blob.marshal(),
            encrypted.marshal(),
            max(1, int(self.settings.session_seconds)),
            nonce,
        )

    # -- a node without a TPM -----------------------------------------------
    def approval(self, req: ApprovalRequest, source: str) -> FinishResponse:
        """A boot of a node without a TPM: recorded until an admin approves this very key,
        then one certificate for it."""
        node = self._node(req.node)
        if node.attestation is not Attestation.APPROVAL:
            raise Refused(
                "tpm_required",
                f"node {node.name} proves its machine with its TPM "
                "(attestation: tpm in chaos.yaml); a request without TPM proof is "
                "refused",
                node.name,
            )
        csr = self._check_csr(req.csr, node.name)
        der = csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        fp, now = boot_fingerprint(der), self.clock()
        verdict, boot = self.boots.ask(fp, key_sha256(der), node.name, req.macs, source, now)
        if verdict is Verdict.OTHER_NODE:
            raise Refused(
                "wrong_identity",
                f"this key ({fp}) waits as {boot.node}, not {node.name}",
                node.name,
            )
        if verdict is Verdict.USED:
            raise Refused(
                "replayed",
                f"the approval of boot {fp} was already used; a new "
                "boot makes a new key and waits for a new approval",
                node.name,
            )
        wait = (
            f"recorded; an admin approves this boot with `chaos-build enroll "
            f"approve-boot {fp}` (node {node.name})"
        )
        if verdict is Verdict.EXPIRED:
            raise Refused(
                "expired",
                f"the approval of boot {fp} expired after "
                f"{self.settings.approval_seconds / 60:g} min; {wait}",
                node.name,
            )
        if verdict is Verdict.WAITING:
            raise Refused(
                "awaiting_approval",
                f"boot {fp} of {node.name} has no TPM attestation: {wait}",
                node.name,
            )
        log.info(
            "enroll %s: boot %s of %s approved at %s; issuing",
            source,
            fp,
            node.name,
            boot.approved_at,
        )
        return self._issue(node.name, csr, now)

    def _node(self, name: str) -> Any:
        try:
            node = self.cluster.node(name)
        except KeyError:
            raise Refused("unknown_node", f"no node named {name!r} in chaos.yaml", name) from None
        if self.pki.is_revoked(name):
            raise Refused("revoked", f"node {name} is revoked; it gets no certificate", name)
        return node

    def registry(self) -> Registry:
        """The registry file, reread when it changes (an approval takes effect at once)."""
        try:
            mtime = self.registry_path.stat().st_mtime
        except FileNotFoundError:
            mtime = -1.0
        cached = self._registry
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_registry(self.registry_path, self.cluster))
            self._registry = cached
        return cached[1]

    def _check_csr(self, pem: str, node: str) -> x509.CertificateSigningRequest:
        c = read_csr(pem, node)
        if not c.valid:
            raise Refused("bad_csr", "the CSR's signature does not verify", node)
        key = c.csr.public_key()
        if not (
            isinstance(key, ed25519.Ed25519PublicKey)
            or (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1))
        ):
            raise Refused("bad_csr", "the CSR's key must be Ed25519 or ECDSA P-256", node)
        if c.names != [node]:
            raise Refused(
                "wrong_identity", f"the CSR names {c.names or 'nobody'}, not {node}", node
            )
        ident = self._identity(node)
        allowed = {ident.name, ident.fqdn, str(ident.address)}
        if c.other_sans:
            raise Refused(
                "wrong_identity",
                "the CSR asks for SANs other than DNS names and IP addresses",
                node,
            )
        if c.asked - allowed:
            raise Refused(
                "wrong_identity",
                f"the CSR asks for "
                f"{', '.join(sorted(c.asked - allowed))}; {node} is "
                f"{', '.join(sorted(allowed))}",
                node,
            )
        return c.csr

    def _identity(self, name: str) -> Identity:
        node = self.cluster.node(name)
        return Identity(node.name, f"{node.name}.{self.cluster.cluster.domain}", node.address)

    # -- finish --------------------------------------------------------------
    def finish(self, req: FinishRequest, source: str) -> tuple[str, FinishResponse]:
        now = self.clock()
        with self._lock:
            if req.session in self._used:
                raise Refused("replayed", "this session was already used; start again")
            session = self._sessions.pop(req.session, None)
            if session is None:
                raise Refused(
                    "unknown_session",
                    "no such session (it expired long ago or the service restarted); start again",
                )
            # single use from here on, whatever the outcome: no guessing the proof
            self._used[req.session] = session.expires
        node = session.node
        if session.source != source:
            raise Refused("unknown_session", "this session was started from another address", node)
        if now > session.expires:
            raise Refused(
                "expired",
                f"the challenge expired after {self.settings.session_seconds:g} s; start again",
                node,
            )
        csr_der = session.csr.public_bytes(serialization.Encoding.DER)
        if not proof_matches(session.secret, csr_der, req.hmac):
            raise Refused(
                "bad_proof",
                "the proof does not match: this machine did not "
                f"activate the credential for {session.ek_hash}",
                node,
            )
        self._node(node)  # revoked or removed meanwhile?
        self._check_boot(session, req)
        return node, self._issue(node, session.csr, now)

    def _check_boot(self, session: _Session, req: FinishRequest) -> None:
        """Measured boot (builder/measured): the quote and event log against the build's
        reference; a deviation is logged and counted, and refused when enforced."""
        assert self.boot_check is not None
        refused = self.boot_check.refusal(
            self.cluster.node(session.node),
            session.ak_public,
            session.nonce,
            Evidence(req.quote, req.quote_signature, req.event_log),
        )
        if refused is not None and self.boot_check.enforced:
            raise Refused("unmeasured_boot", f"measured boot: {refused.reason}", session.node)

    def _issue(
        self, node: str, csr: x509.CertificateSigningRequest, now: dt.datetime
    ) -> FinishResponse:
        """The certificate for the CSR's key, valid until the night's end plus a margin, at
        most node_cert_hours (builder/night: cert_hours)."""
        hours = cert_hours(self.cluster, now)
        cert = make_node_cert(
            self._identity(node),
            self.cluster.cluster.name,
            csr.public_key(),  # type: ignore[arg-type]
            self._ca_key,
            self._ca,
            now,
            hours / 24,
        )
        self.pki.record_enrolled(node, cert)
        return FinishResponse(
            certificate=cert.public_bytes(serialization.Encoding.PEM).decode(),
            ca=self._ca_pem,
            crl=self.pki.crl_pem().decode(),
            not_after=cert.not_valid_after_utc.isoformat(),
            munge_key=self._munge_key,
        )

    def _sweep(self, now: dt.datetime) -> None:
        for sid, s in list(self._sessions.items()):
            if s.expires < now:
                del self._sessions[sid]
        horizon = now - dt.timedelta(seconds=self.settings.session_seconds)
        for sid, expires in list(self._used.items()):
            if expires < horizon:
                del self._used[sid]


# -- the HTTPS edge --------------------------------------------------------------


def settings_for(
    cluster: Cluster, address: ipaddress.IPv4Address | str | None = None, port: int | None = None
) -> ServiceSettings:
    """The service's settings from chaos.yaml (serve.address, serve.enroll_port), each
    overridable (the CLI's --address/--port)."""
    if address is None and cluster.serve.address is None:
        raise InvalidInput(
            "serve.address is not set: set it to the build host's address on "
            "the lab segment, or pass --address"
        )
    try:
        ip = ipaddress.IPv4Address(address) if address is not None else cluster.serve.address
    except ValueError:
        raise InvalidInput(f"--address {address!r} is not an IPv4 address") from None
    if port is not None and not 1 <= port <= 65535:
        raise InvalidInput(f"--port {port} is out of range; use 1..65535")
    assert ip is not None
    return ServiceSettings(ip, port or cluster.serve.enroll_port)
