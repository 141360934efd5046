"""chaos-renew.timer: a node that stays up near its certificate's expiry gets a new one,
without a reboot and without tearing down its SAs.

When less than a third of the certificate's lifetime is left (derived from the certificate
itself, so it follows security.node_cert_hours with no setting of its own), the node makes
a NEW key in RAM and enrolls again through the same flow as at boot (chaosnode.enroll: the
TPM proves the machine again). Key (0600) and certificate are staged beside the old ones,
then renamed into place; charon reloads its credentials (`swanctl --load-creds`: SAs stay
up) and tyd gets SIGHUP (it rebuilds its TLS contexts from the files). A revoked or removed
node is refused by the service and keeps its current files until they expire.

A node without a TPM (attestation: approval) does not renew unattended: every certificate
it gets needs an admin to approve its key's fingerprint, and the current key alone must not
buy a new certificate (it proves no machine). When due, the timer says so on the console;
an admin renews it by hand with `--force` and approves the fingerprint shown.

    python3 -I -m chaosnode.renew [--force] [--max-time S] [--reload all|charon|none]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from chaosnode import crl, enroll, paths, reload
from chaosnode.console import console
from chaosnode.console import say as console_say
from chaosnode.contract.node import NodeSettings
from chaosnode.files import stage_file
from chaosnode.tpm import NODE_TCTI

RENEW_BELOW: Final = 1 / 3  # of the certificate's lifetime left
MAX_SECONDS: Final = 120.0  # one run's tries; the timer runs again (chaos-renew.timer)
RELOADS: Final = ("all", "charon", "none")


class RenewError(Exception):
    """This node's files or settings do not allow a renewal."""


say = functools.partial(console_say, program="chaos-renew")


def _utc(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def validity(cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime]:
    """(notBefore, notAfter) in UTC (cryptography >= 42 has *_utc; bookworm has 38)."""
    before = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before
    after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after
    return _utc(before), _utc(after)


@dataclass(frozen=True)
class State:
    due: bool
    why: str
    not_after: dt.datetime | None
    renew_from: dt.datetime | None


def _public(key: object) -> bytes:
    der: bytes = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def check(cert_pem: bytes, key_pem: bytes | None, now: dt.datetime) -> State:
    """Is a renewal due? Yes below RENEW_BELOW of the lifetime, and whenever the files are
    not a usable pair (unreadable, or a key that is not the certificate's)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        return State(True, f"the certificate is unreadable ({exc})", None, None)
    before, after = validity(cert)
    renew_from = after - (after - before) * RENEW_BELOW
    try:
        key = (
            None if key_pem is None else serialization.load_pem_private_key(key_pem, password=None)
        )
    except (ValueError, TypeError) as exc:
        return State(True, f"the key is unreadable ({exc})", after, renew_from)
    if key is None or _public(key.public_key()) != _public(cert.public_key()):
        return State(True, "the key is not the certificate's", after, renew_from)
    left = after - now
    if now >= after:
        return State(
            True, f"the certificate expired at {after:%Y-%m-%d %H:%M} UTC", after, renew_from
        )
    if now >= renew_from:
        return State(True, f"{_span(left)} left of {_span(after - before)}", after, renew_from)
    return State(
        False,
        f"valid until {after:%Y-%m-%d %H:%M} UTC ({_span(left)} left); "
        f"renewing from {renew_from:%Y-%m-%d %H:%M} UTC",
        after,
        renew_from,
    )


def _span(delta: dt.timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    return f"{minutes // 60}h{minutes % 60:02d}m"


def node_settings(node_json: Path) -> NodeSettings:
    try:
        node = NodeSettings.loads(node_json.read_text())
    except (OSError, ValueError) as exc:
        raise RenewError(
            f"{node_json}: {exc}; this node's public settings come from "
            "chaos-build (chaos-identity.service)"
        ) from None
    if not node.enroll_url:
        raise RenewError(
            f"{node_json}: no enrollment service (serve.address is null in "
            "chaos.yaml): nothing can renew this certificate"
        )
    return node


def install(
    key: enroll.NodeKey, enrolled: enroll.Enrolled, key_path: Path, cert_path: Path
) -> None:
    """Both files staged first (key 0600), then renamed: a failure while staging leaves the
    old pair whole. A crash between the two renames leaves a key that is not the
    certificate's, which the next run sees as due."""
    staged: list[tuple[Path, Path]] = []
    try:
        staged.append((stage_file(key_path, enroll.key_pem(key), 0o600), key_path))
        staged.append((stage_file(cert_path, enrolled.certificate, 0o644), cert_path))
        for tmp, dest in staged:
            os.replace(tmp, dest)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def install_crl(enrolled: enroll.Enrolled, crl_path: Path, ca_file: Path) -> bool:
    """The CRL that came with the certificate, if it is the CA's and newer than ours."""
    current = crl_path.read_bytes() if crl_path.exists() else None
    if not crl.newer(enrolled.crl, current, ca_file.read_bytes()):
        return False
    crl.install(enrolled.crl, crl_path)
    return True


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m chaosnode.renew",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="renew now, due or not (on a node without a TPM: ask an admin)",
    )
    p.add_argument(
        "--max-time",
        type=float,
        default=None,
        help=f"give up after this many seconds (0: keep trying; default "
        f"{MAX_SECONDS:g}, or 0 on a node without a TPM: an admin must act)",
    )
    p.add_argument(
        "--reload",
        choices=RELOADS,
        default="all",
        help="whom to tell: charon and tyd (all), charon only, or nobody",
    )
    p.add_argument("--node-json", type=Path, default=Path(paths.NODE_JSON))
    p.add_argument("--ca", type=Path, default=Path(paths.CA_CERT_PATH))
    p.add_argument("--key", type=Path, default=Path(paths.NODE_KEY_PATH))
    p.add_argument("--cert", type=Path, default=Path(paths.NODE_CERT_PATH))
    p.add_argument("--crl", type=Path, default=Path(paths.CRL_PATH))
    p.add_argument("--tcti", default=NODE_TCTI, help=f"TPM access (default {NODE_TCTI})")
    return p


@contextlib.contextmanager
def one_at_a_time(directory: Path) -> Iterator[bool]:
    """True while this process holds the renewal lock (a flock on the certificate's
    directory): the timer and an admin's --force must not interleave their renames."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield True  # no directory: the certificate is missing, which main reports
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None, now: dt.datetime | None = None) -> int:
    args = parser().parse_args(argv)
    with one_at_a_time(args.cert.parent) as alone:
        if not alone:
            say(f"another renewal is running (it holds {args.cert.parent}); leaving it be")
            return 0
        return renew(args, now or dt.datetime.now(dt.UTC))


def renew(args: argparse.Namespace, now: dt.datetime) -> int:
    try:
        node = node_settings(args.node_json)
        cert_pem = args.cert.read_bytes()
    except RenewError as exc:
        say(str(exc))
        return 1
    except OSError as exc:
        say(f"no certificate to renew ({exc}); chaos-enroll.service enrolls at boot")
        return 1
    name = node.name
    try:
        key_pem: bytes | None = args.key.read_bytes()
    except OSError:
        key_pem = None
    state = check(cert_pem, key_pem, now)
    if not state.due and not args.force:
        say(f"{name}: certificate {state.why}")
        return 0
    why = state.why if state.due else f"forced; certificate {state.why}"
    approval = node.attestation == "approval"
    if approval and not args.force:
        console(
            f"CHAOS: node {name} has no TPM (attestation: approval) and cannot renew "
            f"unattended: {why}. An admin renews it with `python3 -m chaosnode.renew "
            "--force` on this node and approves the fingerprint it shows"
        )
        return 0
    say(
        f"{name}: renewing ({why}): a new key in RAM, "
        + ("approval by an admin" if approval else "attested by the TPM again")
    )
    max_time = args.max_time if args.max_time is not None else 0 if approval else MAX_SECONDS
    try:
        key, enrolled = enroll.enroll(
            node.enroll_url,
            args.ca,
            name,
            node.address,
            tcti=args.tcti,
            key_type=node.key_type,
            max_seconds=max_time or None,
            attestation=node.attestation,
        )
    except KeyboardInterrupt:
        say(f"{name}: interrupted; keeping the current key and certificate")
        return 130
    except enroll.EnrollError as exc:
        until = f"{state.not_after:%Y-%m-%d %H:%M} UTC" if state.not_after else "unknown"
        say(
            f"{name}: renewal failed: {exc}; keeping the current key and certificate "
            f"(valid until {until}); chaos-renew.timer tries again"
        )
        return 1
    try:
        install(key, enrolled, args.key, args.cert)
    except OSError as exc:
        say(f"{name}: cannot install the new key and certificate: {exc}; keeping the current ones")
        return 1
    done = [
        f"CHAOS: node {name} renewed its certificate: new key made on this machine "
        f"({enrolled.attested}), valid until {enrolled.not_after}"
    ]
    try:
        if install_crl(enrolled, args.crl, args.ca):
            done.append("newer CRL installed")
    except (OSError, crl.CrlError) as exc:
        say(f"{name}: keeping our CRL: {exc}")
    return tell(name, args.reload, done)


def tell(name: str, whom: str, done: list[str]) -> int:
    """Reload charon (and tyd) and say on the console what happened; 1 if charon did not
    take the new credentials (it keeps signing with the old key until someone reloads it)."""
    charon = reload.charon_creds() if whom != "none" else None
    if whom != "none":
        done.append(
            f"charon did NOT reload ({charon}): run swanctl --load-creds"
            if charon
            else "charon reloaded its credentials, SAs kept"
        )
    if whom == "all":
        problem = reload.tyd()
        done.append(f"tyd: {problem}" if problem else "tyd reloaded")
    console("; ".join(done))
    return 1 if charon else 0


if __name__ == "__main__":
    raise SystemExit(main())
