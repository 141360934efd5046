from __future__ import annotations

import datetime as dt
import ipaddress
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import CLUSTER, NOW, address, make_pki, name  # noqa: E402

from builder.model import KeyType  # noqa: E402
from builder.pki import Identity, Pki, cert_pem, key_pem, make_node_cert, new_key  # noqa: E402

NODES = 12
REVOKED = 9  # node09's certificate is revoked before any daemon starts
EXPIRED = 10  # node10 holds an expired certificate (see `bad_certs`)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    p = make_pki(tmp_path_factory.mktemp("pki"), NODES)
    # what the revoked member still holds: revoking deletes the PKI's copy of its key
    p.paths.node_key(name(REVOKED)).rename(p.paths.root / "revoked-member.key")
    p.revoke(name(REVOKED), NOW, 30)
    return p


@pytest.fixture(scope="session")
def bad_certs(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Client credentials that must all be refused: (cert, key) paths by case."""
    root = tmp_path_factory.mktemp("bad")
    out: dict[str, tuple[Path, Path]] = {}

    foreign = make_pki(root / "foreign", 5)  # another CA, same names and addresses
    out["foreign-ca"] = (foreign.paths.node_cert(name(5)), foreign.paths.node_key(name(5)))

    ident = Identity(name(5), f"{name(5)}.lab.example", ipaddress.IPv4Address(address(5)))
    key = new_key(KeyType.ED25519)
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ident.fqdn)])
    selfsigned = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(ident.name), x509.IPAddress(ident.address)]),
            False,
        )
        .sign(key, None)
    )
    _write(root, "selfsigned", cert_pem(selfsigned), key_pem(key), out)

    ca_key, ca = pki.ca()
    ident10 = Identity(
        name(EXPIRED), f"{name(EXPIRED)}.lab.example", ipaddress.IPv4Address(address(EXPIRED))
    )
    old = make_node_cert(ident10, CLUSTER, key, ca_key, ca, NOW - dt.timedelta(days=40), 2)
    _write(root, "expired", cert_pem(old), key_pem(key), out)

    revoked = next(pki.paths.nodes.glob(f"{name(REVOKED)}.*.revoked"))
    out["revoked"] = (revoked, pki.paths.root / "revoked-member.key")
    return out


def _write(
    root: Path, case: str, cert: bytes, key: bytes, out: dict[str, tuple[Path, Path]]
) -> None:
    (root / f"{case}.pem").write_bytes(cert)
    (root / f"{case}.key").write_bytes(key)
    out[case] = (root / f"{case}.pem", root / f"{case}.key")


@pytest.fixture
def port() -> int:
    return random.randint(20000, 45000)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
