"""The enrollment protocol: its records, declared once, imported by node and service alike.

JSON over HTTPS POST, two steps:
    POST /enroll/start   StartRequest  -> StartResponse   (the server's challenge)
    POST /enroll/finish  FinishRequest -> FinishResponse  (the certificate)
A node without a TPM (attestation: approval in chaos.yaml) has no proof to give; it repeats
one step until an admin approves this boot by its fingerprint:
    POST /enroll/approval  ApprovalRequest -> FinishResponse, or 403 awaiting_approval
A refusal is an HTTP 4xx/5xx with a Refusal body {error: short code, reason: human text}.
Pure: no I/O, no clock; stdlib only (runs under `python3 -I` on the node).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Final

START_PATH: Final = "/enroll/start"
FINISH_PATH: Final = "/enroll/finish"
APPROVAL_PATH: Final = "/enroll/approval"
PATHS: Final = (START_PATH, FINISH_PATH, APPROVAL_PATH)
# GET: the cluster's current CRL (public; nodes refresh theirs from it while they run)
CRL_PATH: Final = "/crl"
MUNGE_KEY_MAX: Final = 1024  # munged's own limit on a key's size
CONTENT_TYPE: Final = "application/json"
MAX_BODY: Final = 16 * 1024
MAX_MACS: Final = 16
MAX_TPM_PUBLIC: Final = 1024  # a marshalled TPM2B_PUBLIC (RSA-2048 EK: ~320 bytes)
MAX_CSR: Final = 4096
MAX_BLOB: Final = 1024
# measured boot: the quote (TPMS_ATTEST), its TPMT_SIGNATURE and the UEFI event log (real
# logs are 20-200 KB); only the finish request carries them
NONCE_BYTES: Final = 32
MAX_QUOTE: Final = 1024
MAX_EVENT_LOG: Final = 256 * 1024
MAX_FINISH_BODY: Final = 4 * (MAX_EVENT_LOG + 2 * MAX_QUOTE) // 3 + 4096
SECRET_BYTES: Final = 32

NODE_NAME: Final = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
MAC: Final = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
SESSION: Final = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
HMAC_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
FINGERPRINT: Final = re.compile(r"^[0-9a-f]{4}(-[0-9a-f]{4}){3}$")

# Every refusal code with its HTTP status: one table for server and client.
REFUSALS: Final[dict[str, int]] = {
    "malformed": 400,  # not JSON, wrong fields or types
    "too_large": 413,  # body over MAX_BODY
    "bad_ak": 400,  # AK lacks fixedTPM/fixedParent/sensitiveDataOrigin/restricted/sign
    "bad_csr": 400,  # unparsable CSR, bad signature, unsupported key
    "wrong_identity": 403,  # CSR names another node or address
    "unknown_node": 403,  # no such node in chaos.yaml (or removed)
    "revoked": 403,  # the node is revoked
    "unregistered": 403,  # EK not registered for this node: recorded as pending
    "tpm_required": 403,  # a request without TPM proof for a node whose attestation is tpm
    "awaiting_approval": 403,  # a boot without TPM, recorded; waits for `approve-boot`
    "unknown_session": 403,  # no such session (or the server restarted)
    "expired": 403,  # the challenge expired
    "replayed": 403,  # the session was already used
    "bad_proof": 403,  # HMAC does not match: not the TPM that holds the EK
    "unmeasured_boot": 403,  # the quote and event log show no genuine boot of this build
    "not_found": 404,  # no such path
    "rate_limited": 429,  # too many requests from this source
    "busy": 503,  # too many sessions in flight
    "internal": 500,  # a bug or a broken PKI on the server
}


class ProtocolError(Exception):
    """A refusal: a short code (a key of REFUSALS) and a reason for humans."""

    def __init__(self, code: str, reason: str) -> None:
        if code not in REFUSALS:
            code, reason = "internal", f"unknown refusal code {code!r}: {reason}"
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def status(self) -> int:
        return REFUSALS[self.code]

    def to_json(self) -> bytes:
        return _dump({"error": self.code, "reason": self.reason})

    @classmethod
    def from_json(cls, body: bytes, status: int) -> ProtocolError:
        """A refusal the server sent (or a stand-in if the body is not one)."""
        try:
            data = json.loads(body)
            code, reason = data["error"], data["reason"]
            if isinstance(code, str) and isinstance(reason, str) and code in REFUSALS:
                return cls(code, reason[:500])
        except (ValueError, KeyError, TypeError, RecursionError):
            pass
        return cls(
            "internal" if status >= 500 else "malformed", f"HTTP {status} without a refusal record"
        )


# -- field helpers ----------------------------------------------------------------
def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Two values for one key are refused: parsers disagree on which one wins."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ProtocolError("malformed", f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


def _load(
    body: bytes,
    fields: tuple[str, ...],
    what: str,
    optional: tuple[str, ...] = (),
    limit: int = MAX_BODY,
) -> dict[str, Any]:
    if len(body) > limit:
        raise ProtocolError("too_large", f"{what} is {len(body)} bytes; the limit is {limit}")
    try:
        data = json.loads(body, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError;
        # 16 KiB of brackets nest deeper than the parser's recursion limit
        raise ProtocolError("malformed", f"{what} is not JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise ProtocolError("malformed", f"{what} must be a JSON object")
    missing = [f for f in fields if f not in data]
    extra = sorted(set(data) - set(fields) - set(optional))
    if missing:
        raise ProtocolError("malformed", f"{what} lacks {', '.join(missing)}")
    if extra:
        raise ProtocolError("malformed", f"{what} has unknown fields {', '.join(extra)}")
    return data


def _text(
    data: dict[str, Any], name: str, limit: int, pattern: re.Pattern[str] | None = None
) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise ProtocolError("malformed", f"{name} must be a string")
    if len(value) > limit:
        raise ProtocolError("malformed", f"{name} is longer than {limit} characters")
    if pattern is not None and not pattern.match(value):
        raise ProtocolError("malformed", f"{name} {value[:80]!r} is not valid")
    return value


def _b64(data: dict[str, Any], name: str, limit: int) -> bytes:
    text = _text(data, name, 4 * ((limit + 2) // 3))
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("malformed", f"{name} is not base64") from None
    if not raw:
        raise ProtocolError("malformed", f"{name} is empty")
    return raw


def _int(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ProtocolError("malformed", f"{name} must be a whole number in {low}..{high}")
    return value


def _macs(data: dict[str, Any]) -> tuple[str, ...]:
    macs = data["macs"]
    if not isinstance(macs, list) or len(macs) > MAX_MACS:
        raise ProtocolError("malformed", f"macs must be a list of at most {MAX_MACS}")
    for mac in macs:
        if not isinstance(mac, str) or not MAC.match(mac):
            raise ProtocolError(
                "malformed",
                f"macs: {str(mac)[:40]!r} is not a MAC such as 52:54:00:99:00:11 (lower case)",
            )
    return tuple(macs)


def _csr(data: dict[str, Any]) -> str:
    csr = _text(data, "csr", MAX_CSR)
    if not csr.startswith("-----BEGIN CERTIFICATE REQUEST-----"):
        raise ProtocolError("malformed", "csr must be a PEM certificate request")
    return csr


def _enc(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# -- records ----------------------------------------------------------------------
@dataclass(frozen=True)
class StartRequest:
    node: str
    macs: tuple[str, ...]
    ek_public: bytes  # marshalled TPM2B_PUBLIC
    ak_public: bytes  # marshalled TPM2B_PUBLIC
    csr: str  # PEM

    FIELDS = ("node", "macs", "ek_public", "ak_public", "csr")

    def to_json(self) -> bytes:
        return _dump(
            {
                "node": self.node,
                "macs": list(self.macs),
                "ek_public": _enc(self.ek_public),
                "ak_public": _enc(self.ak_public),
                "csr": self.csr,
            }
        )

    @classmethod
    def from_json(cls, body: bytes) -> StartRequest:
        data = _load(body, cls.FIELDS, "start request")
        macs, csr = _macs(data), _csr(data)
        return cls(
            node=_text(data, "node", 63, NODE_NAME),
            macs=macs,
            ek_public=_b64(data, "ek_public", MAX_TPM_PUBLIC),
            ak_public=_b64(data, "ak_public", MAX_TPM_PUBLIC),
            csr=csr,
        )


@dataclass(frozen=True)
class ApprovalRequest:
    """The start request of a node without a TPM: no EK, no AK, only what an admin compares
    (the node, its MACs, the fingerprint of the CSR's key)."""

    node: str
    macs: tuple[str, ...]
    csr: str  # PEM

    FIELDS = ("node", "macs", "csr")

    def to_json(self) -> bytes:
        return _dump({"node": self.node, "macs": list(self.macs), "csr": self.csr})

    @classmethod
    def from_json(cls, body: bytes) -> ApprovalRequest:
        data = _load(body, cls.FIELDS, "approval request")
        return cls(node=_text(data, "node", 63, NODE_NAME), macs=_macs(data), csr=_csr(data))


@dataclass(frozen=True)
class StartResponse:
    session: str
    credential_blob: bytes  # marshalled TPM2B_ID_OBJECT
    encrypted_secret: bytes  # marshalled TPM2B_ENCRYPTED_SECRET
    expires_in: int  # seconds
    nonce: bytes = b""  # measured boot: quote the boot PCRs with this (none: no quote)

    FIELDS = ("session", "credential_blob", "encrypted_secret", "expires_in")
    OPTIONAL = ("nonce",)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "session": self.session,
            "credential_blob": _enc(self.credential_blob),
            "encrypted_secret": _enc(self.encrypted_secret),
            "expires_in": self.expires_in,
        }
        if self.nonce:
            data["nonce"] = _enc(self.nonce)
        return _dump(data)

    @classmethod
    def from_json(cls, body: bytes) -> StartResponse:
        data = _load(body, cls.FIELDS, "start response", cls.OPTIONAL)
        return cls(
            session=_text(data, "session", 64, SESSION),
            credential_blob=_b64(data, "credential_blob", MAX_BLOB),
            encrypted_secret=_b64(data, "encrypted_secret", MAX_BLOB),
            expires_in=_int(data, "expires_in", 1, 3600),
            nonce=_b64(data, "nonce", NONCE_BYTES) if "nonce" in data else b"",
        )


@dataclass(frozen=True)
class FinishRequest:
    session: str
    hmac: str  # hex HMAC-SHA256 of the CSR's DER under the activated secret
    # measured boot, when the start response carried a nonce: the AK's quote of the boot
    # PCRs (TPMS_ATTEST, TPMT_SIGNATURE) and the UEFI event log (absent: the node has none)
    quote: bytes = b""
    quote_signature: bytes = b""
    event_log: bytes = b""

    FIELDS = ("session", "hmac")
    OPTIONAL = ("quote", "quote_signature", "event_log")
    LIMITS = {"quote": MAX_QUOTE, "quote_signature": MAX_QUOTE, "event_log": MAX_EVENT_LOG}

    def to_json(self) -> bytes:
        data = {"session": self.session, "hmac": self.hmac}
        data |= {name: _enc(getattr(self, name)) for name in self.OPTIONAL if getattr(self, name)}
        return _dump(data)

    @classmethod
    def from_json(cls, body: bytes) -> FinishRequest:
        data = _load(body, cls.FIELDS, "finish request", cls.OPTIONAL, MAX_FINISH_BODY)
        return cls(
            session=_text(data, "session", 64, SESSION),
            hmac=_text(data, "hmac", 64, HMAC_HEX),
            **{name: _b64(data, name, limit) for name, limit in cls.LIMITS.items() if name in data},
        )


@dataclass(frozen=True)
class FinishResponse:
    certificate: str  # PEM
    ca: str  # PEM
    crl: str  # PEM
    not_after: str  # ISO 8601, UTC
    # the cluster's munge key (Slurm's secret), only to an attested node of a cluster with a
    # Slurm workload; never logged, written to tmpfs by the node
    munge_key: bytes = b""

    FIELDS = ("certificate", "ca", "crl", "not_after")
    OPTIONAL = ("munge_key",)

    def to_json(self) -> bytes:
        data = {
            "certificate": self.certificate,
            "ca": self.ca,
            "crl": self.crl,
            "not_after": self.not_after,
        }
        if self.munge_key:
            data["munge_key"] = _enc(self.munge_key)
        return _dump(data)

    @classmethod
    def from_json(cls, body: bytes) -> FinishResponse:
        data = _load(body, cls.FIELDS, "finish response", cls.OPTIONAL)
        return cls(
            certificate=_text(data, "certificate", MAX_BODY),
            ca=_text(data, "ca", MAX_BODY),
            crl=_text(data, "crl", MAX_BODY),
            not_after=_text(data, "not_after", 40),
            munge_key=_b64(data, "munge_key", MUNGE_KEY_MAX) if "munge_key" in data else b"",
        )

    def __repr__(self) -> str:  # never the munge key in a log or traceback
        return (
            f"FinishResponse(certificate=..., not_after={self.not_after!r}, "
            f"munge_key={'<set>' if self.munge_key else '<none>'})"
        )


# -- the proof of activation ---------------------------------------------------------
def proof(secret: bytes, csr_der: bytes) -> str:
    """What the node sends to show it activated the credential: binds the CSR to the TPM."""
    return hmac.new(secret, csr_der, hashlib.sha256).hexdigest()


def boot_fingerprint(public_key_der: bytes) -> str:
    """What a node without a TPM shows on its console and the admin approves: the first 64
    bits of the SHA-256 of its key (DER SubjectPublicKeyInfo), as 3f2a-91bc-0d4e-7a11.
    The service binds the approval to the full hash; this is for human eyes."""
    digest = hashlib.sha256(public_key_der).hexdigest()[:16]
    return "-".join(digest[i : i + 4] for i in range(0, 16, 4))


def key_sha256(public_key_der: bytes) -> str:
    return "sha256:" + hashlib.sha256(public_key_der).hexdigest()


def proof_matches(secret: bytes, csr_der: bytes, claimed: str) -> bool:
    return hmac.compare_digest(proof(secret, csr_der), claimed)
