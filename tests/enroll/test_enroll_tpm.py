"""Enrollment end to end on loopback: swtpm, the service in-process, the node's client run by
/usr/bin/python3 as on a node. What must hold, and what must NOT happen."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets

import pytest
from conftest import (
    Lab,
    needs_swtpm,
    pending_entries,
    persistent_handles,
    raw_post,
    tpm_ek_hash,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from builder.pki import sans_of
from chaosnode.enroll import Client, make_csr, new_key
from chaosnode.enrollment import (
    FINISH_PATH,
    MAX_BODY,
    START_PATH,
    FinishRequest,
    ProtocolError,
    StartRequest,
    StartResponse,
    proof,
)
from chaosnode.tpm import AK_ATTRIBUTES, Tpm, TpmError
from chaosnode.tpmpub import TPMA_OBJECT

pytestmark = needs_swtpm


def start_request(
    keys_att: object,
    node: str = "node01",
    address: str = "10.99.0.11",
    csr_node: str | None = None,
    ek_public: bytes | None = None,
) -> tuple[StartRequest, bytes]:
    key = new_key()
    import ipaddress  # noqa: PLC0415

    csr = make_csr(key, csr_node or node, ipaddress.IPv4Address(address))
    att = keys_att
    req = StartRequest(
        node=node,
        macs=("52:54:00:99:00:11",),
        ek_public=ek_public or att.ek_public,  # type: ignore[attr-defined]
        ak_public=att.ak_public,  # type: ignore[attr-defined]
        csr=csr.public_bytes(serialization.Encoding.PEM).decode(),
    )
    return req, csr.public_bytes(serialization.Encoding.DER)


def refusal(call: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        call()  # type: ignore[operator]
    return err.value


def assert_good_client_enrolls(lab: Lab) -> x509.Certificate:
    r = lab.client(lab.tpm_a)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return x509.load_pem_x509_certificate((lab.root / "out/node01/node.pem").read_bytes())


def test_registered_tpm_gets_a_certificate_for_a_key_that_never_left_the_node(lab: Lab, caplog):
    caplog.set_level(logging.INFO, logger="chaos.enroll")
    before = persistent_handles(lab.tpm_a)
    r = lab.client(lab.tpm_a)
    assert r.returncode == 0, r.stderr
    assert f"enrolled as node01 (TPM EK {lab.ek_a})" in r.stderr
    key_file, cert_file = lab.root / "out/node01/node.key", lab.root / "out/node01/node.pem"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    raw = serialization.PublicFormat.Raw, serialization.Encoding.Raw
    assert cert.public_key().public_bytes(raw[1], raw[0]) == key.public_key().public_bytes(
        raw[1], raw[0]
    )
    cert.verify_directly_issued_by(lab.pki.ca_cert())
    assert sorted(sans_of(cert)) == ["10.99.0.11", "node01", "node01.chaos.lan"]
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life == dt.timedelta(hours=16, minutes=5)
    # the wire carried public things only: no form of the private key in any request
    secret = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert len(lab.bodies) == 2
    for body in lab.bodies:
        for form in (
            secret,
            secret.hex().encode(),
            base64.b64encode(secret),
            key_file.read_bytes().splitlines()[1],
            b"PRIVATE KEY",
        ):
            assert form not in body
    assert (lab.pki.paths.enrolled / "node01.pem").read_bytes() == cert_file.read_bytes()
    assert persistent_handles(lab.tpm_a) == before
    # every request logged with source, node and outcome; no key material in the log
    lines = [r.getMessage() for r in caplog.records if r.name == "chaos.enroll"]
    assert lines == [
        "enroll 127.0.0.1 /enroll/start node=node01 ok",
        "enroll 127.0.0.1 /enroll/finish node=node01 ok",
    ]


def test_ecdsa_key_type(lab: Lab):
    r = lab.client(lab.tpm_a, "node01", "10.99.0.11", "--key-type", "ecdsa-p256")
    assert r.returncode == 0, r.stderr
    key = serialization.load_pem_private_key((lab.root / "out/node01/node.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((lab.root / "out/node01/node.pem").read_bytes())
    assert cert.public_key() == key.public_key()


def test_unknown_tpm_is_recorded_pending_refused_then_approved(lab: Lab, capsys):
    from builder.cli import main  # noqa: PLC0415

    ek_b = tpm_ek_hash(lab.tpm_b)
    r = lab.client(lab.tpm_b, "node02", "10.99.0.12", "--max-time", "1.5")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert f"not registered as node02: TPM EK {ek_b}" in r.stderr
    assert f"chaos-build enroll approve {ek_b} --node node02" in r.stderr
    assert not (lab.root / "out/node02/node.pem").exists()
    [entry] = pending_entries(lab)
    assert entry["ek_hash"] == ek_b and entry["node"] == "node02"
    assert entry["source"] == "127.0.0.1" and entry["macs"]
    assert main(["enroll", "pending", "-c", str(lab.config)]) == 0
    assert ek_b in capsys.readouterr().out
    # the admin compares and approves; the registry stays a readable, versionable file
    assert main(["enroll", "approve", ek_b, "--node", "node02", "-c", str(lab.config)]) == 0
    text = lab.registry.read_text()
    assert text.startswith("# TPM registry")
    assert f"node01:\n  - {lab.ek_a}  # test TPM A\nnode02:\n  - {ek_b}  # approved " in text
    assert pending_entries(lab) == []
    r = lab.client(lab.tpm_b, "node02", "10.99.0.12")
    assert r.returncode == 0, r.stderr
    # one machine is one node: B may not also be node03, nor A be node02
    assert main(["enroll", "approve", ek_b, "--node", "node03", "-c", str(lab.config)]) == 2
    r = lab.client(lab.tpm_a, "node02", "10.99.0.12", "--max-time", "1")
    assert r.returncode == 1 and "registered for node01, not node02" in r.stderr


def test_registered_ek_public_with_another_tpm_is_refused(lab: Lab):
    """The attack that matters: the EK public part is no secret. The attacker sends TPM A's
    EK public (registered for node01) but holds TPM B."""
    with Tpm(lab.tpm_a.tcti) as a, a.keys() as keys_a:
        ek_a_public = keys_a.attestation.ek_public
    client = Client(lab.url, lab.ca_file)
    with Tpm(lab.tpm_b.tcti) as b, b.keys() as keys_b:
        req, _ = start_request(keys_b.attestation, ek_public=ek_a_public)
        challenge = StartResponse.from_json(client.post(START_PATH, req.to_json()))
        with pytest.raises(TpmError, match="activation failed"):
            keys_b.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
    guess = FinishRequest(challenge.session, secrets.token_hex(32))
    err = refusal(lambda: client.post(FINISH_PATH, guess.to_json()))
    assert err.code == "bad_proof" and "did not activate" in err.reason
    err = refusal(lambda: client.post(FINISH_PATH, guess.to_json()))
    assert err.code == "replayed"
    client.close()
    assert_good_client_enrolls(lab)


@pytest.mark.parametrize(
    "drop",
    [TPMA_OBJECT.RESTRICTED, TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT],
    ids=["restricted", "fixedTPM"],
)  # a TPM refuses fixedTPM alone
def test_ak_that_is_not_an_attestation_key_is_refused(lab: Lab, drop):
    client = Client(lab.url, lab.ca_file)
    with Tpm(lab.tpm_a.tcti) as a, a.keys(AK_ATTRIBUTES & ~drop) as keys:
        req, _ = start_request(keys.attestation)
        err = refusal(lambda: client.post(START_PATH, req.to_json()))
    assert err.code == "bad_ak"
    assert ("restricted" if drop == TPMA_OBJECT.RESTRICTED else "fixedTPM") in err.reason
    client.close()


def test_protocol_refusals_each_with_its_reason_and_service_keeps_serving(lab: Lab):
    client = Client(lab.url, lab.ca_file)
    with Tpm(lab.tpm_a.tcti) as a, a.keys() as keys:
        # wrong HMAC: the proof is over another CSR
        req, _ = start_request(keys.attestation)
        ch = StartResponse.from_json(client.post(START_PATH, req.to_json()))
        secret = keys.activate_credential(ch.credential_blob, ch.encrypted_secret)
        wrong = FinishRequest(ch.session, proof(secret, b"another csr"))
        assert refusal(lambda: client.post(FINISH_PATH, wrong.to_json())).code == "bad_proof"
        # a good round, then its finish replayed
        req, der = start_request(keys.attestation)
        ch = StartResponse.from_json(client.post(START_PATH, req.to_json()))
        secret = keys.activate_credential(ch.credential_blob, ch.encrypted_secret)
        good = FinishRequest(ch.session, proof(secret, der))
        assert b"BEGIN CERTIFICATE" in client.post(FINISH_PATH, good.to_json())
        err = refusal(lambda: client.post(FINISH_PATH, good.to_json()))
        assert err.code == "replayed"
        # a CSR for another node's name, or this node's name with another address
        req, _ = start_request(keys.attestation, csr_node="node02")
        err = refusal(lambda: client.post(START_PATH, req.to_json()))
        assert (err.code, err.reason) == ("wrong_identity", "the CSR names ['node02'], not node01")
        req, _ = start_request(keys.attestation, address="10.99.0.12")
        err = refusal(lambda: client.post(START_PATH, req.to_json()))
        assert err.code == "wrong_identity" and "10.99.0.12" in err.reason
        # asking as another node with A's TPM
        req, _ = start_request(keys.attestation, node="node02", address="10.99.0.12")
        err = refusal(lambda: client.post(START_PATH, req.to_json()))
        assert err.code == "unregistered" and "registered for node01" in err.reason
        # a node that is not in chaos.yaml
        req, _ = start_request(keys.attestation, node="node99", address="10.99.0.99")
        assert refusal(lambda: client.post(START_PATH, req.to_json())).code == "unknown_node"
    client.close()
    # oversized and malformed requests
    status, body = raw_post(lab, START_PATH, b"", declared=MAX_BODY + 1)
    assert (status, body["error"]) == (413, "too_large")
    status, body = raw_post(lab, START_PATH, b"{not json")
    assert (status, body["error"]) == (400, "malformed") and "not JSON" in body["reason"]
    status, body = raw_post(lab, START_PATH, b'{"node": "node01"}')
    assert (status, body["error"]) == (400, "malformed") and "lacks macs" in body["reason"]
    status, body = raw_post(lab, FINISH_PATH, b'{"session": "x", "hmac": "y"}')
    assert (status, body["error"]) == (400, "malformed")
    status, body = raw_post(
        lab, FINISH_PATH, json.dumps({"session": "A" * 32, "hmac": "0" * 64}).encode()
    )
    assert (status, body["error"]) == (403, "unknown_session")
    status, body = raw_post(lab, "/enroll/other", b"{}")
    assert (status, body["error"]) == (404, "not_found")
    status, body = raw_post(lab, START_PATH, b"", method="GET")
    assert status == 405
    status, body = raw_post(lab, START_PATH, b"", method="BREW")
    assert (status, body["error"]) == (501, "not_found")
    # a client that does not speak TLS, or stalls, does not hurt the service
    import socket  # noqa: PLC0415

    with socket.create_connection(("127.0.0.1", lab.server.server_address[1])) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert_good_client_enrolls(lab)


def test_client_rejects_a_server_without_a_cluster_certificate(lab: Lab, tmp_path):
    from builder.pki import Pki  # noqa: PLC0415

    other = Pki(tmp_path / "other")
    other.init_ca("impostor", dt.datetime.now(dt.UTC), 30)
    r = lab.client(
        lab.tpm_a,
        "node01",
        "10.99.0.11",
        "--max-time",
        "5",
        ca=other.paths.ca_cert,
        out=tmp_path / "out",
    )
    assert r.returncode == 1 and "not the cluster's enrollment service" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
    assert lab.bodies == []  # nothing was sent to a server it does not trust


def test_client_retries_an_unreachable_service_then_gives_up_in_time(lab: Lab):
    import time  # noqa: PLC0415

    from builder.enroll.swtpm import free_ports  # noqa: PLC0415

    dead = f"https://127.0.0.1:{free_ports(1)}"
    lab.url_override = dead
    t = time.monotonic()
    r = lab.client(lab.tpm_a, "node01", "10.99.0.11", "--max-time", "2")
    assert 1.5 < time.monotonic() - t < 10
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("cannot reach 127.0.0.1") >= 2
    assert "no certificate within 2 s; giving up" in r.stderr
