"""The cluster PKI: CA safety, idempotent issuing, revocation and expiry warnings."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from chaostest import NOW
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from builder.errors import PkiError
from builder.model import KeyType
from builder.pki import Identity, Pki, make_node_cert, sans_of

ALPHA = Identity("alpha", "alpha.lab.test", ipaddress.IPv4Address("10.99.0.11"))


@pytest.fixture
def pki(tmp_path) -> Pki:
    p = Pki(tmp_path / "pki")
    assert p.init_ca("lab", NOW, 3650)
    return p


def test_ca_is_a_ca_and_its_key_is_private(pki):
    ca = pki.ca_cert()
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert pki.paths.ca_key.stat().st_mode & 0o777 == 0o600


def test_ca_key_is_never_regenerated(pki):
    key = pki.paths.ca_key.read_bytes()
    assert not pki.init_ca("lab", NOW, 3650)
    assert pki.paths.ca_key.read_bytes() == key


def test_ca_cert_without_key_is_an_error_not_a_new_ca(pki):
    pki.paths.ca_key.unlink()
    with pytest.raises(PkiError, match="without its key"):
        pki.init_ca("lab", NOW, 3650)
    assert not pki.paths.ca_key.exists()


def test_node_certificate_carries_name_and_address(pki):
    assert pki.issue(ALPHA, "lab", NOW, 365)
    cert = pki.node_cert("alpha")
    assert set(sans_of(cert)) == {"alpha.lab.test", "alpha", "10.99.0.11"}
    cert.verify_directly_issued_by(pki.ca_cert())
    assert pki.paths.node_key("alpha").stat().st_mode & 0o777 == 0o600


def test_issuing_is_idempotent(pki):
    assert pki.issue(ALPHA, "lab", NOW, 365)
    pem = pki.paths.node_cert("alpha").read_bytes()
    assert not pki.issue(ALPHA, "lab", NOW, 365)
    assert pki.paths.node_cert("alpha").read_bytes() == pem


def test_changed_address_gets_a_new_certificate(pki):
    pki.issue(ALPHA, "lab", NOW, 365)
    moved = Identity("alpha", "alpha.lab.test", ipaddress.IPv4Address("10.99.0.99"))
    assert pki.issue(moved, "lab", NOW, 365)
    assert "10.99.0.99" in sans_of(pki.node_cert("alpha"))


def test_revocation_lands_in_the_crl(pki):
    pki.issue(ALPHA, "lab", NOW, 365)
    [serial] = pki.revoke("alpha", NOW, 365)
    crl = x509.load_pem_x509_crl(pki.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert crl.is_signature_valid(pki.ca_cert().public_key())
    assert [i.name for i in pki.certificates()] == []
    # re-issuing after revocation gives a new serial that is not revoked
    assert pki.issue(ALPHA, "lab", NOW, 365)
    assert pki.node_cert("alpha").serial_number != serial


def test_revoking_a_node_revokes_the_certificate_enrollment_issued_it(pki):
    key = ed25519.Ed25519PrivateKey.generate()
    ca_key, ca = pki.ca()
    tonight = make_node_cert(ALPHA, "lab", key.public_key(), ca_key, ca, NOW, 16 / 24)
    pki.record_enrolled("alpha", tonight)
    assert pki.revoke("alpha", NOW, 365) == [tonight.serial_number]
    crl = x509.load_pem_x509_crl(pki.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(tonight.serial_number) is not None
    assert pki.is_revoked("alpha")
    with pytest.raises(PkiError, match="holds no certificate"):
        pki.revoke("alpha", NOW, 365)


def test_expiry_warning_within_seven_days(pki):
    pki.issue(ALPHA, "lab", NOW, 10)
    assert pki.expiry_warnings(NOW) == []
    later = NOW + dt.timedelta(days=4)
    assert any("alpha" in w and "expires" in w for w in pki.expiry_warnings(later))


def test_ecdsa_option(tmp_path):
    p = Pki(tmp_path / "pki", KeyType.ECDSA_P256)
    p.init_ca("lab", NOW, 3650)
    p.issue(ALPHA, "lab", NOW, 365)
    assert p.node_cert("alpha").signature_hash_algorithm is not None


def test_missing_ca_is_a_clear_error(tmp_path):
    with pytest.raises(PkiError, match="pki init"):
        Pki(tmp_path / "none").issue(ALPHA, "lab", NOW, 365)
