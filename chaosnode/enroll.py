"""The node's enrollment client: make a key in RAM, prove the machine with its TPM, get a
short-lived certificate for the key. A node without a TPM (attestation: approval) shows its
key's fingerprint on the console instead and waits until an admin approves this boot.
The private key never leaves this process but to the file it is written to (0600, tmpfs on
a node).

    python3 -m chaosnode.enroll --url https://10.99.0.2:8443 --ca /etc/swanctl/x509ca/ca.pem \
        --node node01 --address 10.99.0.11 --key-out K --cert-out C [--tcti T]
        [--attestation tpm|approval]

Runs under `/usr/bin/python3 -I` with the stdlib, python3-cryptography 38 and
python3-tpm2-pytss 1.2.0 (Debian bookworm). Expected failures are one line, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import http.client
import ipaddress
import os
import pwd
import random
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from . import console, service
from .enrollment import (
    APPROVAL_PATH,
    CONTENT_TYPE,
    FINISH_PATH,
    MAX_EVENT_LOG,
    START_PATH,
    ApprovalRequest,
    FinishRequest,
    FinishResponse,
    ProtocolError,
    StartRequest,
    StartResponse,
    boot_fingerprint,
    proof,
)
from .files import atomic_write
from .paths import EVENT_LOG, MUNGE_USER, NODE_CERT_PATH, NODE_KEY_PATH
from .signature import ca_signed
from .tpm import NODE_TCTI, Keys, Tpm, TpmError
from .tpmpub import ek_hash

KEY_TYPES: Final = ("ed25519", "ecdsa-p256")
REQUEST_TIMEOUT: Final = 15.0
BACKOFF_FIRST: Final = 1.0
BACKOFF_MAX: Final = 30.0
PENDING_WAIT: Final = 60.0
APPROVAL_POLL_MAX: Final = 15.0  # a node without a TPM asks this often once approved
APPROVAL_REMIND: Final = 60.0  # and repeats its fingerprint on the console this often
ATTESTATIONS: Final = ("tpm", "approval")  # chaos.yaml's nodes[].attestation
# refusals worth another try: the server is busy, or the challenge ran out
RETRY_SOON: Final = frozenset({"rate_limited", "busy", "internal", "expired", "unknown_session"})

NodeKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class EnrollError(Exception):
    """Enrollment failed for a reason retrying will not fix (or time ran out)."""


class Refused(EnrollError):
    """The service refused this machine for a reason that asking again in the same boot cannot
    change (an unmeasured boot, a node chaos.yaml does not have, ...)."""


class _Retry(Exception):
    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.wait = wait


class _Wait(Exception):
    """Try again after `wait` seconds (None: the backoff); the console was already told."""

    def __init__(self, wait: float | None) -> None:
        super().__init__("wait")
        self.wait = wait


@dataclass(frozen=True)
class Enrolled:
    certificate: bytes  # PEM
    ca: bytes  # PEM
    crl: bytes  # PEM
    not_after: str
    attested: str  # how: "TPM EK sha256:..." or "boot 3f2a-... approved by an admin, no TPM"
    munge_key: bytes = field(default=b"", repr=False)  # Slurm's secret, if the cluster runs it


say = functools.partial(console.say, program="chaos-enroll")


# -- key and CSR ------------------------------------------------------------------
def new_key(key_type: str = "ed25519") -> NodeKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise EnrollError(f"unknown key type {key_type!r}; use {' or '.join(KEY_TYPES)}")


def make_csr(
    key: NodeKey, node: str, address: ipaddress.IPv4Address
) -> x509.CertificateSigningRequest:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(node), x509.IPAddress(address)]),
            critical=False,
        )
        .sign(key, algorithm)
    )


def local_macs(sys_net: Path = Path("/sys/class/net")) -> tuple[str, ...]:
    """MACs of this machine's NICs (for the admin's pending list; not a proof of anything)."""
    macs = set()
    for iface in sorted(sys_net.glob("*")):
        try:
            mac = (iface / "address").read_text().strip().lower()
        except OSError:
            continue
        if mac and mac != "00:00:00:00:00:00" and len(mac) == 17 and int(mac[:2], 16) & 1 == 0:
            macs.add(mac)
    return tuple(sorted(macs))[:16]


# -- HTTPS ------------------------------------------------------------------------
class Client:
    """One HTTPS connection to the enrollment service, checked against the cluster CA."""

    def __init__(self, url: str, ca_file: Path, timeout: float = REQUEST_TIMEOUT) -> None:
        try:
            self.conn = service.connect(url, ca_file, timeout)
        except ValueError as exc:
            raise EnrollError(str(exc)) from None
        self.host, self.port = self.conn.host, self.conn.port

    def post(self, path: str, body: bytes) -> bytes:
        """The response body of a 200; a refusal as ProtocolError; a failed connection as
        _Retry."""
        try:
            self.conn.request("POST", path, body, {"Content-Type": CONTENT_TYPE})
            resp = self.conn.getresponse()
            data = resp.read(64 * 1024)
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise EnrollError(
                f"the server at {self.host}:{self.port} is not the cluster's "
                f"enrollment service: {exc.verify_message}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise _Retry(
                f"cannot reach {self.host}:{self.port}: {exc or type(exc).__name__}"
            ) from None
        if resp.status != 200:
            raise ProtocolError.from_json(data, resp.status)
        return data

    def close(self) -> None:
        self.conn.close()


# -- the protocol -----------------------------------------------------------------
def read_event_log(path: Path) -> bytes:
    """The firmware's UEFI event log; empty if there is none (a BIOS boot, no TPM log) or
    it is over the protocol's limit: the service then decides."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_EVENT_LOG + 1)
    except OSError as exc:
        say(f"no UEFI event log to send ({exc.strerror or exc}); the boot cannot be verified")
        return b""
    if len(data) > MAX_EVENT_LOG:
        say(f"the UEFI event log is over {MAX_EVENT_LOG} bytes; not sent")
        return b""
    return data


def attempt(
    client: Client,
    keys: Keys,
    node: str,
    macs: Sequence[str],
    csr: x509.CertificateSigningRequest,
    ca: x509.Certificate,
    event_log: Path = Path(EVENT_LOG),
) -> Enrolled:
    """One start / activate / finish round; with a nonce in the challenge (measured boot)
    the finish also carries the AK's quote of the boot PCRs and the event log."""
    att = keys.attestation
    start = StartRequest(
        node=node,
        macs=tuple(macs),
        ek_public=att.ek_public,
        ak_public=att.ak_public,
        csr=csr.public_bytes(serialization.Encoding.PEM).decode(),
    )
    try:
        challenge = StartResponse.from_json(client.post(START_PATH, start.to_json()))
    except ProtocolError as exc:
        if exc.code == "malformed" and "response" in exc.reason:
            raise _Retry(f"garbled answer from the server: {exc.reason}") from None
        raise
    secret = keys.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
    finish = FinishRequest(
        challenge.session, proof(secret, csr.public_bytes(serialization.Encoding.DER))
    )
    if challenge.nonce:
        quote = keys.quote(challenge.nonce)
        finish = dataclasses.replace(
            finish,
            quote=quote.attest,
            quote_signature=quote.signature,
            event_log=read_event_log(event_log),
        )
    reply = FinishResponse.from_json(client.post(FINISH_PATH, finish.to_json()))
    cert = _check_certificate(reply, csr, ca)
    return Enrolled(
        cert.public_bytes(serialization.Encoding.PEM),
        reply.ca.encode(),
        reply.crl.encode(),
        reply.not_after,
        f"TPM EK {ek_hash(att.ek_public)}",
        munge_key=reply.munge_key,
    )


def _check_certificate(
    reply: FinishResponse, csr: x509.CertificateSigningRequest, ca: x509.Certificate
) -> x509.Certificate:
    """The certificate is for our key and signed by the cluster CA we trust."""
    try:
        cert = x509.load_pem_x509_certificate(reply.certificate.encode())
    except ValueError as exc:
        raise EnrollError(f"the server sent an unreadable certificate: {exc}") from None
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(der, spki) != csr.public_key().public_bytes(der, spki):
        raise EnrollError("the server's certificate is not for this node's key")
    if not ca_signed(ca, cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm):
        raise EnrollError("the certificate is not signed by the cluster CA")
    return cert


def enroll(
    url: str,
    ca_file: Path,
    node: str,
    address: ipaddress.IPv4Address | str,
    tcti: str = NODE_TCTI,
    key_type: str = "ed25519",
    macs: Sequence[str] | None = None,
    max_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    attestation: str = "tpm",
    event_log: Path = Path(EVENT_LOG),
) -> tuple[NodeKey, Enrolled]:
    """Enroll this machine as `node`: returns the new key (in memory) and what the service
    issued. With attestation "tpm" the TPM proves the machine; with "approval" (a node
    without a TPM) the boot waits until an admin approves the key's fingerprint. Retries
    connection failures, 5xx and 429 with bounded backoff, and waits for an admin while the
    machine is pending; raises EnrollError for the rest, or when max_seconds (None: no
    limit) run out."""
    if attestation not in ATTESTATIONS:
        raise EnrollError(f"unknown attestation {attestation!r}; use {' or '.join(ATTESTATIONS)}")
    address = ipaddress.IPv4Address(address)
    try:
        ca = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise EnrollError(f"cannot read the cluster CA {ca_file}: {exc}") from None
    key = new_key(key_type)
    csr = make_csr(key, node, address)
    macs = local_macs() if macs is None else tuple(macs)

    def by_tpm(client: Client) -> Enrolled:
        try:
            with Tpm(tcti) as tpm, tpm.keys() as keys:
                try:
                    return attempt(client, keys, node, macs, csr, ca, event_log)
                except ProtocolError as exc:
                    raise _Wait(_after_refusal(exc, node, keys)) from None
        except TpmError as exc:
            raise EnrollError(str(exc)) from None

    if attestation == "approval":
        waiting = _Waiting(
            node,
            boot_fingerprint(
                csr.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ),
        )
        return key, _keep_trying(
            url,
            Path(ca_file),
            lambda client: by_approval(client, node, macs, csr, ca, waiting),
            max_seconds,
            sleep,
            APPROVAL_POLL_MAX,
        )
    return key, _keep_trying(url, Path(ca_file), by_tpm, max_seconds, sleep, BACKOFF_MAX)


def _keep_trying(
    url: str,
    ca_file: Path,
    one_try: Callable[[Client], Enrolled],
    max_seconds: float | None,
    sleep: Callable[[float], None],
    backoff_max: float,
) -> Enrolled:
    """one_try until it returns, with backoff (_Retry, _Wait) and an overall deadline."""
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    backoff = BACKOFF_FIRST
    while True:
        client = Client(url, ca_file)
        try:
            return one_try(client)
        except _Retry as exc:
            say(f"{exc}; retrying")
            wait = exc.wait
        except _Wait as exc:
            wait = exc.wait
        finally:
            client.close()
        if wait is None:
            wait, backoff = backoff, min(backoff * 2, backoff_max)
        else:
            backoff = BACKOFF_FIRST
        wait *= random.uniform(0.8, 1.2)  # a lab booting at once must not retry in step
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EnrollError(f"no certificate within {max_seconds:g} s; giving up")
            wait = min(wait, left)
        sleep(wait)


def _after_refusal(exc: ProtocolError, node: str, keys: Keys) -> float | None:
    """How long to wait before the next try (None: the backoff), or raise if hopeless."""
    if exc.code == "unregistered":
        ek = ek_hash(keys.attestation.ek_public)
        say(
            f"this machine is not registered as {node}: TPM EK {ek}; waiting for an admin "
            f"to run `chaos-build enroll approve {ek} --node {node}` ({exc.reason})"
        )
        return PENDING_WAIT
    if exc.code in RETRY_SOON:
        say(f"refused ({exc.code}: {exc.reason}); retrying")
        return None
    raise Refused(f"refused: {exc.code}: {exc.reason}")


# -- a node without a TPM ---------------------------------------------------------
@dataclass
class _Waiting:
    """What the console has been told while this boot waits for its approval."""

    node: str
    fingerprint: str
    told_at: float | None = None


def by_approval(
    client: Client,
    node: str,
    macs: Sequence[str],
    csr: x509.CertificateSigningRequest,
    ca: x509.Certificate,
    waiting: _Waiting,
) -> Enrolled:
    """One try of a node without a TPM: the certificate once an admin approved this boot's
    key; _Wait (polling with backoff) while it is not approved."""
    req = ApprovalRequest(
        node=node, macs=tuple(macs), csr=csr.public_bytes(serialization.Encoding.PEM).decode()
    )
    try:
        body = client.post(APPROVAL_PATH, req.to_json())
    except ProtocolError as exc:
        if exc.code in ("awaiting_approval", "expired"):
            now = time.monotonic()
            if (
                exc.code == "expired"
                or waiting.told_at is None
                or now - waiting.told_at >= APPROVAL_REMIND
            ):
                waiting.told_at = now
                say(
                    f"this machine has no TPM attestation: approve this boot with "
                    f"chaos-build enroll approve-boot {waiting.fingerprint} (node {node})"
                    + (f" ({exc.reason})" if exc.code == "expired" else "")
                )
            raise _Wait(None) from None
        if exc.code in RETRY_SOON:
            raise _Retry(f"refused ({exc.code}: {exc.reason})") from None
        raise Refused(f"refused: {exc.code}: {exc.reason}") from None
    try:
        reply = FinishResponse.from_json(body)
    except ProtocolError as exc:
        raise _Retry(f"garbled answer from the server: {exc.reason}") from None
    cert = _check_certificate(reply, csr, ca)
    return Enrolled(
        cert.public_bytes(serialization.Encoding.PEM),
        reply.ca.encode(),
        reply.crl.encode(),
        reply.not_after,
        f"boot {waiting.fingerprint} approved by an admin, no TPM",
        munge_key=reply.munge_key,
    )


# -- files ------------------------------------------------------------------------
def key_pem(key: NodeKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def save(
    key: NodeKey, enrolled: Enrolled, key_out: Path, cert_out: Path, crl_out: Path | None = None
) -> None:
    atomic_write(key_out, key_pem(key), 0o600)
    atomic_write(cert_out, enrolled.certificate, 0o644)
    if crl_out is not None:
        atomic_write(crl_out, enrolled.crl, 0o644)


def save_munge_key(key: bytes, path: Path, owner: str | None = MUNGE_USER) -> None:
    """The cluster's munge key into tmpfs, 0400 and owned by munged's user (munged refuses a
    key others can read)."""
    atomic_write(path, key, 0o400)
    if owner is not None:
        user = pwd.getpwnam(owner)
        os.chown(path, user.pw_uid, user.pw_gid)


# -- command line -----------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m chaosnode.enroll",
        description="Enroll this machine: TPM-attested certificate for a key made here, in RAM.",
    )
    p.add_argument("--url", required=True, help="https://IP:PORT of the enrollment service")
    p.add_argument("--ca", required=True, type=Path, help="the cluster CA certificate")
    p.add_argument("--node", required=True, help="this node's name")
    p.add_argument("--address", required=True, help="this node's IPv4 address")
    p.add_argument("--key-out", type=Path, default=Path(NODE_KEY_PATH))
    p.add_argument("--cert-out", type=Path, default=Path(NODE_CERT_PATH))
    p.add_argument("--crl-out", type=Path, help="also write the CRL the service sent")
    p.add_argument(
        "--munge-key-out",
        type=Path,
        help="write the cluster's munge key, if the "
        "service sent one (Slurm), here (tmpfs), 0400 munge:munge",
    )
    p.add_argument(
        "--munge-key-owner",
        default=MUNGE_USER,
        help=f"the user munged runs as (default {MUNGE_USER})",
    )
    p.add_argument("--tcti", default=NODE_TCTI, help=f"TPM access (default {NODE_TCTI})")
    p.add_argument(
        "--event-log",
        type=Path,
        default=Path(EVENT_LOG),
        help="the UEFI event log sent with the measured-boot quote",
    )
    p.add_argument(
        "--attestation",
        choices=ATTESTATIONS,
        default="tpm",
        help="tpm: prove the machine with its TPM; approval (no TPM): wait until "
        "an admin approves this boot's fingerprint",
    )
    p.add_argument(
        "--key-type", choices=KEY_TYPES, default="ed25519", help="the cluster's security.key_type"
    )
    p.add_argument(
        "--max-time",
        type=float,
        default=0,
        help="give up after this many seconds (default 0: keep trying)",
    )
    p.add_argument(
        "--refusal-file",
        type=Path,
        help="keep the service's refusal here (tmpfs) and, while it is there, ask no more: "
        "units that want tyd start this one again in the same boot",
    )
    return p


def keep_refusal(path: Path, why: str) -> None:
    """The refusal, for the rest of this boot; a node that cannot write it just asks again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(why + "\n")
    except OSError as exc:
        say(f"cannot keep the refusal in {path}: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        address = ipaddress.IPv4Address(args.address)
    except ValueError:
        say(f"--address {args.address!r} is not an IPv4 address")
        return 2
    if args.refusal_file is not None and args.refusal_file.exists():
        said = args.refusal_file.read_text(errors="replace").strip()
        say(f"not asking again in this boot (the next boot asks): {said}")
        return 1
    try:
        key, enrolled = enroll(
            args.url,
            args.ca,
            args.node,
            address,
            tcti=args.tcti,
            key_type=args.key_type,
            max_seconds=args.max_time or None,
            attestation=args.attestation,
            event_log=args.event_log,
        )
        save(key, enrolled, args.key_out, args.cert_out, args.crl_out)
        if args.munge_key_out is not None and enrolled.munge_key:
            save_munge_key(enrolled.munge_key, args.munge_key_out, args.munge_key_owner)
    except Refused as exc:
        say(str(exc))
        if args.refusal_file is not None:
            keep_refusal(args.refusal_file, str(exc))
        return 1
    except EnrollError as exc:
        say(str(exc))
        return 1
    except OSError as exc:
        say(f"cannot write the key or certificate: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    say(
        f"enrolled as {args.node} ({enrolled.attested}); certificate valid until "
        f"{enrolled.not_after}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
