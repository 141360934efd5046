"""chaos-crl.timer: keep this node's CRL current while it runs, so a member revoked during
the night is refused by everyone within minutes, without a reboot.

Fetches the CRL from the enrollment service (HTTPS, server checked against the cluster CA),
installs it only if the cluster CA signed it and it is newer than ours, then makes charon
reload its credentials; tyd notices the new file by itself.

    python3 -I -m chaosnode.crl [--url URL] [--ca CA] [--crl PATH] [--no-reload]
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509

from chaosnode import paths, reload, service
from chaosnode.contract.node import NodeSettings
from chaosnode.enrollment import CRL_PATH as CRL_URL_PATH
from chaosnode.files import atomic_write
from chaosnode.signature import ca_signed

MAX_CRL: Final = 1 << 20
TIMEOUT: Final = 15.0


class CrlError(Exception):
    """The CRL could not be fetched, or is not one this node may install."""


def fetch(url: str, ca_file: Path, timeout: float = TIMEOUT) -> bytes:
    try:
        conn = service.connect(url, ca_file, timeout)
    except ValueError as exc:
        raise CrlError(str(exc)) from None
    try:
        conn.request("GET", CRL_URL_PATH)
        reply = conn.getresponse()
        body = reply.read(MAX_CRL + 1)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        raise CrlError(f"{url}{CRL_URL_PATH}: {exc}") from None
    finally:
        conn.close()
    if reply.status != 200 or len(body) > MAX_CRL:
        raise CrlError(f"{url}{CRL_URL_PATH}: HTTP {reply.status}, {len(body)} bytes")
    return body


def newer(candidate: bytes, current: bytes | None, ca_pem: bytes) -> bool:
    """True if candidate is a CRL signed by the cluster CA and newer than current."""
    try:
        crl = x509.load_pem_x509_crl(candidate)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise CrlError(f"not a PEM CRL: {exc}") from None
    if crl.issuer != ca.subject or not ca_signed(
        ca, crl.signature, crl.tbs_certlist_bytes, crl.signature_hash_algorithm
    ):
        raise CrlError("the CRL is not signed by the cluster CA")
    if current is None:
        return True
    try:
        ours = x509.load_pem_x509_crl(current)
    except ValueError:
        return True  # ours is broken: the signed one wins
    return issued_at(crl) > issued_at(ours)


def issued_at(crl: x509.CertificateRevocationList) -> datetime.datetime:
    """lastUpdate in UTC (cryptography >= 42 names it last_update_utc; bookworm has 38)."""
    utc = getattr(crl, "last_update_utc", None)
    return utc if utc is not None else crl.last_update.replace(tzinfo=datetime.UTC)


def install(data: bytes, dest: Path) -> None:
    atomic_write(dest, data)


def enroll_url(node_json: Path = Path(paths.NODE_JSON)) -> str:
    try:
        return NodeSettings.loads(node_json.read_text()).enroll_url
    except (OSError, ValueError):
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m chaosnode.crl", description=__doc__)
    p.add_argument("--url", default=None, help="the enrollment service (default: node.json)")
    p.add_argument("--ca", type=Path, default=Path(paths.CA_CERT_PATH))
    p.add_argument("--crl", type=Path, default=Path(paths.CRL_PATH))
    p.add_argument("--no-reload", action="store_true", help="do not tell charon")
    args = p.parse_args(argv)
    url = args.url or enroll_url()
    if not url:
        print("chaos-crl: no enrollment service configured; keeping the CRL", file=sys.stderr)
        return 0
    try:
        data = fetch(url, args.ca)
        current = args.crl.read_bytes() if args.crl.exists() else None
        if not newer(data, current, args.ca.read_bytes()):
            print("chaos-crl: CRL is current", flush=True)
            return 0
        install(data, args.crl)
    except (CrlError, OSError) as exc:
        print(f"chaos-crl: {exc}; keeping the CRL we have", file=sys.stderr, flush=True)
        return 1
    print(f"chaos-crl: installed a newer CRL in {args.crl}", flush=True)
    if not args.no_reload:
        problem = reload.charon_creds()
        if problem:
            print(f"chaos-crl: {problem}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
