"""The service's logic with a fake clock (TPM A for activation), its TLS identity, the rate
limit, the CLI's serve command."""

from __future__ import annotations

import datetime as dt
import ipaddress
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaostest import ROOT
from conftest import Lab, needs_swtpm
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss.types import TPM2B_PUBLIC

from builder.config import load_cluster
from builder.enroll import service
from builder.enroll.registry import PendingStore
from builder.enroll.swtpm import free_ports
from builder.pki import Identity, Pki, pki_at, sans_of
from chaosnode.enroll import make_csr, new_key
from chaosnode.enrollment import FinishRequest, ProtocolError, StartRequest, proof
from chaosnode.tpm import AK_ATTRIBUTES, Tpm, ak_template
from chaosnode.tpmpub import ak_problems, ek_hash, name_of

T0 = dt.datetime(2026, 11, 27, 17, 0, tzinfo=dt.UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def enrollment(lab: Lab, clock: FakeClock, **settings: object) -> service.Enrollment:
    s = service.ServiceSettings(ipaddress.IPv4Address("127.0.0.1"), 1, **settings)  # type: ignore[arg-type]
    return service.Enrollment(
        lab.cluster,
        lab.pki,
        lab.registry,
        PendingStore(lab.pki.paths.root / "pending.json"),
        s,
        clock,
    )


def request(
    keys: object, node: str = "node01", address: str = "10.99.0.11"
) -> tuple[StartRequest, bytes]:
    csr = make_csr(new_key(), node, ipaddress.IPv4Address(address))
    att = keys.attestation  # type: ignore[attr-defined]
    return (
        StartRequest(
            node,
            (),
            att.ek_public,
            att.ak_public,
            csr.public_bytes(serialization.Encoding.PEM).decode(),
        ),
        csr.public_bytes(serialization.Encoding.DER),
    )


def code_of(call: object) -> str:
    with pytest.raises(ProtocolError) as err:
        call()  # type: ignore[operator]
    return err.value.code


@needs_swtpm
def test_challenge_expires_and_session_is_single_use(lab: Lab):
    clock = FakeClock()
    svc = enrollment(lab, clock, session_seconds=5)
    with Tpm(lab.tpm_a.tcti) as tpm, tpm.keys() as keys:
        req, der = request(keys)
        ch = svc.start(req, "10.99.0.11")
        secret = keys.activate_credential(ch.credential_blob, ch.encrypted_secret)
        clock.now += dt.timedelta(seconds=6)
        late = FinishRequest(ch.session, proof(secret, der))
        assert code_of(lambda: svc.finish(late, "10.99.0.11")) == "expired"
        assert code_of(lambda: svc.finish(late, "10.99.0.11")) == "replayed"
        # in time, but from another address
        ch = svc.start(req, "10.99.0.11")
        secret = keys.activate_credential(ch.credential_blob, ch.encrypted_secret)
        other = FinishRequest(ch.session, proof(secret, der))
        assert code_of(lambda: svc.finish(other, "10.99.0.66")) == "unknown_session"
        # in time: a certificate valid node_cert_hours from the clock's now
        ch = svc.start(req, "10.99.0.11")
        secret = keys.activate_credential(ch.credential_blob, ch.encrypted_secret)
        node, done = svc.finish(FinishRequest(ch.session, proof(secret, der)), "10.99.0.11")
    cert = x509.load_pem_x509_certificate(done.certificate.encode())
    assert node == "node01"
    assert cert.not_valid_after_utc == clock.now + dt.timedelta(hours=16)


@needs_swtpm
def test_sessions_are_bounded(lab: Lab):
    svc = enrollment(lab, FakeClock(), max_sessions=2)
    with Tpm(lab.tpm_a.tcti) as tpm, tpm.keys() as keys:
        req, _ = request(keys)
        svc.start(req, "a")
        svc.start(req, "a")
        assert code_of(lambda: svc.start(req, "a")) == "busy"


@needs_swtpm
def test_revoked_or_removed_node_gets_no_certificate(lab: Lab):
    clock = FakeClock()
    svc = enrollment(lab, clock)
    lab.pki.issue(
        Identity("node01", "node01.chaos.lan", ipaddress.IPv4Address("10.99.0.11")),
        "chaos-lab",
        dt.datetime.now(dt.UTC),
        1,
    )
    lab.pki.revoke("node01", dt.datetime.now(dt.UTC), 1)
    with Tpm(lab.tpm_a.tcti) as tpm, tpm.keys() as keys:
        req, _ = request(keys)
        assert code_of(lambda: svc.start(req, "x")) == "revoked"
        req, _ = request(keys, "node77", "10.99.0.77")
        assert code_of(lambda: svc.start(req, "x")) == "unknown_node"


def test_rate_limit_per_source():
    clock = FakeClock()
    limiter = service.RateLimiter(rate=1, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")
    clock.now += dt.timedelta(seconds=1)
    assert limiter.allow("a") and not limiter.allow("a")


def test_service_certificate_follows_the_address_and_never_touches_the_ca_key(tmp_path):
    pki = Pki(tmp_path / "pki")
    pki.init_ca("lab", T0, 30)
    ca_key = pki.paths.ca_key.read_bytes()
    a, b = ipaddress.IPv4Address("10.99.0.2"), ipaddress.IPv4Address("10.99.0.3")
    cert_path, key_path = pki.service_identity("lab", a, T0)
    first = cert_path.read_bytes()
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    assert pki.service_identity("lab", a, T0 + dt.timedelta(days=1))[0].read_bytes() == first
    pki.service_identity("lab", b, T0)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert sans_of(cert) == ["10.99.0.3"]
    cert.verify_directly_issued_by(pki.ca_cert())
    assert pki.paths.ca_key.read_bytes() == ca_key


def test_ek_hash_is_the_sha256_of_the_der_public_key():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib  # noqa: PLC0415

    marshalled = TPM2B_PUBLIC.from_pem(pem).marshal()
    assert ek_hash(marshalled) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_ak_attributes_and_name():
    good = ak_template()
    assert ak_problems(good) == []
    assert name_of(good) == bytes(good.publicArea.get_name())
    weak = ak_template(AK_ATTRIBUTES & ~0x10000)  # restricted
    assert ak_problems(weak) == ["missing restricted"]


def test_cli_enroll_serve_runs_until_ctrl_c(tmp_path):
    # the default chaos.yaml without its serve section (serve.address unset)
    text = (ROOT / "chaos.yaml").read_text()
    start = text.index("\nserve:\n")
    (tmp_path / "chaos.yaml").write_text(text[:start] + text[text.index("\n\n", start) :])
    cluster = load_cluster(tmp_path / "chaos.yaml")[0]
    pki_at(cluster, tmp_path / "pki").init_ca("chaos-lab", T0 + dt.timedelta(days=-1), 30)
    port = free_ports(1)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "builder.cli",
            "enroll",
            "serve",
            "-c",
            str(tmp_path / "chaos.yaml"),
            "--address",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        assert f"enrollment service on https://127.0.0.1:{port}" in line
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "enrollment service stopped" in err
    assert "Traceback" not in err
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "builder.cli",
            "enroll",
            "serve",
            "-c",
            str(tmp_path / "chaos.yaml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "serve.address is not set" in r.stderr


def test_cli_approve_refuses_bad_input(workdir: Path, capsys):
    from builder.cli import main  # noqa: PLC0415

    assert (
        main(
            [
                "enroll",
                "approve",
                "sha256:xyz",
                "--node",
                "node01",
                "-c",
                str(workdir / "chaos.yaml"),
            ]
        )
        == 2
    )
    assert "is not an EK hash" in capsys.readouterr().err
    (workdir / "tpm-registry.yaml").write_text("node01: [nope]\n")
    assert (
        main(
            [
                "enroll",
                "approve",
                "sha256:" + "a" * 64,
                "--node",
                "node01",
                "-c",
                str(workdir / "chaos.yaml"),
            ]
        )
        == 2
    )
    assert "tpm-registry.yaml:1: node01[0]: 'nope' is not an EK hash" in capsys.readouterr().err


def test_client_checks_the_certificate_is_for_its_key_and_from_the_cluster_ca(tmp_path):
    from builder.model import KeyType  # noqa: PLC0415
    from builder.pki import make_node_cert  # noqa: PLC0415
    from chaosnode.enroll import EnrollError, _check_certificate  # noqa: PLC0415
    from chaosnode.enrollment import FinishResponse  # noqa: PLC0415

    pki = Pki(tmp_path / "pki", KeyType.ECDSA_P256)
    pki.init_ca("lab", T0, 30)
    ca_key, ca = pki.ca()
    ident = Identity("node01", "node01.lab", ipaddress.IPv4Address("10.99.0.11"))
    csr = make_csr(new_key("ecdsa-p256"), "node01", ident.address)

    def reply(key: object) -> FinishResponse:
        cert = make_node_cert(ident, "lab", key, ca_key, ca, T0, 1)  # type: ignore[arg-type]
        return FinishResponse(cert.public_bytes(serialization.Encoding.PEM).decode(), "", "", "")

    assert _check_certificate(reply(csr.public_key()), csr, ca)
    with pytest.raises(EnrollError, match="not for this node's key"):
        _check_certificate(reply(new_key().public_key()), csr, ca)
    other = Pki(tmp_path / "other", KeyType.ECDSA_P256)
    other.init_ca("lab", T0, 30)
    with pytest.raises(EnrollError, match="not signed by the cluster CA"):
        _check_certificate(reply(csr.public_key()), csr, other.ca_cert())


def test_an_ek_must_be_a_restricted_decryption_key():
    from chaosnode.tpmpub import ek_problems  # noqa: PLC0415

    assert ek_problems(ak_template()) == ["missing decrypt", "must not have sign"]
