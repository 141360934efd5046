"""A node without a TPM (attestation: approval) end to end on loopback: the node's client run
by /usr/bin/python3 as on a node (no TPM opened at all), the service in-process, the admin's
`chaos-build enroll pending` and `approve-boot`. What must hold, and what must NOT happen."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import APPROVAL_NODE, NODE_ENV, Lab, needs_swtpm, raw_post
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from builder.enroll.boots import BOOTS_FILE, BootStore
from chaosnode.enroll import Client, make_csr, new_key
from chaosnode.enrollment import (
    APPROVAL_PATH,
    MAX_BODY,
    ApprovalRequest,
    FinishResponse,
    ProtocolError,
    boot_fingerprint,
)

pytestmark = needs_swtpm  # the lab fixture also runs TPM clients (the good client at the end)

NODE, ADDRESS = APPROVAL_NODE
ASK = re.compile(
    r"this machine has no TPM attestation: approve this boot with chaos-build "
    rf"enroll approve-boot ([0-9a-f-]{{19}}) \(node {NODE}\)"
)


def boots(lab: Lab) -> BootStore:
    return BootStore(lab.pki.paths.root / BOOTS_FILE)


def wait_for(condition: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def no_tpm_client(
    lab: Lab, *extra: str, node: str = NODE, address: str = ADDRESS, out: Path | None = None
) -> subprocess.Popen[str]:
    """The node's client without a TPM (the default TCTI, a device that is never opened)."""
    argv = lab.client_argv(node, address, "--attestation", "approval", *extra, out=out)
    return subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=NODE_ENV)


def cli(lab: Lab, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from builder.cli import main  # noqa: PLC0415

    rc = main(["enroll", *args, "-c", str(lab.config)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_boot_without_tpm_waits_for_approval_then_gets_a_certificate_for_its_key(
    lab: Lab, capsys
):
    proc = no_tpm_client(lab, "--max-time", "60")
    try:
        # refused (recorded, waiting) at least twice: nothing is issued before the admin acts
        wait_for(lambda: any(b.attempts >= 2 for b in boots(lab).entries()))
        assert proc.poll() is None
        assert not (lab.root / "out" / NODE / "node.pem").exists()
        [boot] = boots(lab).entries()
        assert (boot.node, boot.source, boot.state) == (NODE, "127.0.0.1", "waiting")
        assert boot.macs  # this machine's NICs, for the admin to compare
        rc, out, err = cli(lab, capsys, "pending")
        assert rc == 0
        [line] = [x for x in out.splitlines() if x.startswith("boot ")]
        assert line.startswith(f"boot {boot.fingerprint}  as {NODE}")
        assert "from 127.0.0.1" in line and boot.macs[0] in line and "age " in line
        assert "(waiting, no TPM)" in line and "approve-boot FINGERPRINT" in err
        rc, out, _ = cli(lab, capsys, "approve-boot", boot.fingerprint)
        assert rc == 0 and f"{NODE}: approved boot {boot.fingerprint}" in out
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    # the console showed the same fingerprint the admin approved
    assert ASK.findall(stderr)[:1] == [boot.fingerprint]
    assert f"enrolled as {NODE} (boot {boot.fingerprint} approved by an admin, no TPM)" in stderr
    key_file, cert_file = lab.root / "out" / NODE / "node.key", lab.root / "out" / NODE / "node.pem"
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(lab.pki.ca_cert())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert boot_fingerprint(der) == boot.fingerprint
    # the wire carried public things only
    secret = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert lab.bodies and all(
        base64.b64encode(secret) not in b and b"PRIVATE" not in b for b in lab.bodies
    )
    # single use: the approval is spent, and the next boot (a new key) waits again
    rc, _, err = cli(lab, capsys, "approve-boot", boot.fingerprint)
    assert rc == 2 and "already got its certificate" in err
    again = no_tpm_client(lab, "--max-time", "2", out=lab.root / "again")
    _, stderr = again.communicate(timeout=30)
    assert again.returncode == 1 and "no certificate within 2 s" in stderr
    [second] = set(ASK.findall(stderr))
    assert second != boot.fingerprint
    assert not (lab.root / "again").exists()
    rc, out, _ = cli(lab, capsys, "pending")
    assert f"boot {second}  as {NODE}" in out and boot.fingerprint not in out


def test_an_approval_is_for_one_key_and_a_tpm_node_needs_its_tpm(lab: Lab, capsys):
    client = Client(lab.url, lab.ca_file)

    def ask(node: str = NODE, address: str = ADDRESS) -> tuple[object, ApprovalRequest, str]:
        key = new_key()
        csr = make_csr(key, node, ipaddress.IPv4Address(address))
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return (
            key,
            ApprovalRequest(
                node, ("52:54:00:99:00:13",), csr.public_bytes(serialization.Encoding.PEM).decode()
            ),
            boot_fingerprint(der),
        )

    def refusal(req: ApprovalRequest) -> ProtocolError:
        with pytest.raises(ProtocolError) as err:
            client.post(APPROVAL_PATH, req.to_json())
        return err.value

    key, mine, fp = ask()
    assert refusal(mine).code == "awaiting_approval"
    assert cli(lab, capsys, "approve-boot", fp)[0] == 0
    # after the approval, another key asking as the same node is not approved
    _, theirs, fp_theirs = ask()
    err = refusal(theirs)
    assert err.code == "awaiting_approval" and fp_theirs in err.reason
    reply = FinishResponse.from_json(client.post(APPROVAL_PATH, mine.to_json()))
    assert (
        x509.load_pem_x509_certificate(reply.certificate.encode()).public_key() == key.public_key()
    )  # type: ignore[attr-defined]
    assert refusal(mine).code == "replayed"
    # a TPM node's request without TPM proof: refused, and nothing recorded to approve
    _, tpm_node, _ = ask("node01", "10.99.0.11")
    err = refusal(tpm_node)
    assert (err.code, err.status) == ("tpm_required", 403)
    assert all(b.node == NODE for b in boots(lab).entries())
    client.close()
    # the node's client says so on its console and stops (retrying would not help)
    proc = no_tpm_client(
        lab, "--max-time", "20", node="node01", address="10.99.0.11", out=lab.root / "rogue"
    )
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "refused: tpm_required: node node01 proves" in stderr
    assert "Traceback" not in stderr and not (lab.root / "rogue").exists()
    assert_good_tpm_client_enrolls(lab)


def test_malformed_and_oversized_approval_requests_are_refused_with_reasons(lab: Lab):
    good = json.loads(ApprovalRequest(NODE, (), "-----BEGIN CERTIFICATE REQUEST-----\n").to_json())
    cases = [
        (b"", MAX_BODY + 1, 413, "too_large", "the limit is 16384"),
        (b"{not json", None, 400, "malformed", "approval request is not JSON"),
        (
            json.dumps({**good, "ek_public": "AAE="}).encode(),
            None,
            400,
            "malformed",
            "unknown fields ek_public",
        ),
        (json.dumps({"node": NODE, "macs": []}).encode(), None, 400, "malformed", "lacks csr"),
        (
            json.dumps({**good, "macs": ["52:54:00:99:00:13"] * 17}).encode(),
            None,
            400,
            "malformed",
            "at most 16",
        ),
        (
            json.dumps({**good, "csr": good["csr"] + "A" * 5000}).encode(),
            None,
            400,
            "malformed",
            "csr is longer than 4096",
        ),
        (json.dumps(good).encode(), None, 400, "bad_csr", "cannot parse the CSR"),
    ]
    for body, declared, status, code, text in cases:
        got, answer = raw_post(lab, APPROVAL_PATH, body, declared=declared)
        assert (got, answer["error"]) == (status, code), answer
        assert text in answer["reason"]
    assert boots(lab).entries() == []  # none of them was recorded for approval
    assert_good_tpm_client_enrolls(lab)


def assert_good_tpm_client_enrolls(lab: Lab) -> None:
    r = lab.client(lab.tpm_a)
    assert r.returncode == 0, r.stderr
    assert "enrolled as node01 (TPM EK sha256:" in r.stderr
