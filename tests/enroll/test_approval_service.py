"""Nodes without a TPM (attestation: approval), the service's logic with a fake clock: each
boot waits for an admin's approval of its key's fingerprint, single use, expiring; no TPM
and no network here."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import APPROVAL_NODE, write_lab_config
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from builder.config import load_cluster
from builder.enroll import service
from builder.enroll.boots import BOOTS_FILE, BootError, BootStore, normal_fingerprint
from builder.enroll.registry import PendingStore
from builder.pki import Identity, Pki, pki_at
from chaosnode.enroll import NodeKey, make_csr, new_key
from chaosnode.enrollment import FINGERPRINT, ApprovalRequest, ProtocolError, boot_fingerprint

T0 = dt.datetime(2026, 11, 27, 17, 0, tzinfo=dt.UTC)
NODE, ADDRESS = APPROVAL_NODE
MACS = ("52:54:00:99:00:13",)


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Setup:
    svc: service.Enrollment
    clock: FakeClock
    boots: BootStore  # what the admin's CLI opens: the same file as the service's
    pki: Pki


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    cluster = load_cluster(write_lab_config(tmp_path))[0]
    pki = pki_at(cluster, tmp_path / "pki")
    pki.init_ca(cluster.cluster.name, T0 - dt.timedelta(days=1), 30)
    clock = FakeClock()
    settings = service.ServiceSettings(ipaddress.IPv4Address("127.0.0.1"), 1)
    svc = service.Enrollment(
        cluster,
        pki,
        tmp_path / "tpm-registry.yaml",
        PendingStore(pki.paths.root / "pending.json"),
        settings,
        clock,
    )
    return Setup(svc, clock, BootStore(pki.paths.root / BOOTS_FILE), pki)


def boot(
    node: str = NODE, address: str = ADDRESS, csr_node: str | None = None
) -> tuple[NodeKey, ApprovalRequest, str]:
    """A new boot: a new key, its CSR, its fingerprint (as the node computes it)."""
    key = new_key()
    csr = make_csr(key, csr_node or node, ipaddress.IPv4Address(address))
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return (
        key,
        ApprovalRequest(node, MACS, csr.public_bytes(serialization.Encoding.PEM).decode()),
        boot_fingerprint(der),
    )


def refused(call: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        call()  # type: ignore[operator]
    return err.value


def test_a_boot_waits_with_its_fingerprint_until_approved_then_gets_one_certificate(setup):
    key, req, fp = boot()
    err = refused(lambda: setup.svc.approval(req, "10.99.0.13"))
    assert (err.code, err.status) == ("awaiting_approval", 403)
    assert f"chaos-build enroll approve-boot {fp}` (node {NODE})" in err.reason
    assert FINGERPRINT.match(fp)
    [waiting] = setup.boots.entries()
    assert (waiting.fingerprint, waiting.node, waiting.source, waiting.macs, waiting.state) == (
        fp,
        NODE,
        "10.99.0.13",
        MACS,
        "waiting",
    )
    assert waiting.first_seen == T0.isoformat()
    setup.clock.advance(seconds=30)
    assert refused(lambda: setup.svc.approval(req, "10.99.0.13")).code == "awaiting_approval"
    assert setup.boots.entries()[0].attempts == 2
    # the admin approves (fingerprints as typed by a human are normalized)
    approved = setup.boots.approve(fp.upper().replace("-", ""), setup.clock.now)
    assert approved.state == "approved"
    setup.clock.advance(seconds=20)
    done = setup.svc.approval(req, "10.99.0.13")
    cert = x509.load_pem_x509_certificate(done.certificate.encode())
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(setup.pki.ca_cert())
    assert cert.not_valid_after_utc == setup.clock.now + dt.timedelta(hours=16)
    # single use: the same request again gets nothing more, nor can it be approved again
    err = refused(lambda: setup.svc.approval(req, "10.99.0.13"))
    assert err.code == "replayed" and "already used" in err.reason
    with pytest.raises(BootError, match="already got its certificate"):
        setup.boots.approve(fp, setup.clock.now)


def test_the_next_boot_has_a_new_key_and_waits_again(setup):
    _, first, fp1 = boot()
    refused(lambda: setup.svc.approval(first, "10.99.0.13"))
    setup.boots.approve(fp1, setup.clock.now)
    setup.svc.approval(first, "10.99.0.13")
    _, second, fp2 = boot()
    assert fp2 != fp1
    assert refused(lambda: setup.svc.approval(second, "10.99.0.13")).code == "awaiting_approval"


def test_an_approval_binds_to_that_key_not_to_the_node(setup):
    """Someone on the lab network who knows node03's name and address (no secret) asks with
    a key of their own while node03's boot is approved: they wait, node03 is served."""
    key, mine, fp = boot()
    refused(lambda: setup.svc.approval(mine, "10.99.0.13"))
    setup.boots.approve(fp, setup.clock.now)
    _, theirs, fp_theirs = boot()
    err = refused(lambda: setup.svc.approval(theirs, "10.99.0.66"))
    assert err.code == "awaiting_approval" and fp_theirs in err.reason
    done = setup.svc.approval(mine, "10.99.0.13")
    assert (
        x509.load_pem_x509_certificate(done.certificate.encode()).public_key() == key.public_key()
    )


def test_an_expired_approval_is_refused_and_the_boot_waits_again(setup):
    key, req, fp = boot()
    refused(lambda: setup.svc.approval(req, "10.99.0.13"))
    setup.boots.approve(fp, setup.clock.now)
    setup.clock.advance(minutes=15, seconds=1)
    err = refused(lambda: setup.svc.approval(req, "10.99.0.13"))
    assert err.code == "expired" and "expired after 15 min" in err.reason
    assert refused(lambda: setup.svc.approval(req, "10.99.0.13")).code == "awaiting_approval"
    # approved again, in time this time
    setup.boots.approve(fp, setup.clock.now)
    setup.clock.advance(minutes=14)
    assert setup.svc.approval(req, "10.99.0.13").certificate


def test_approve_boot_refuses_unknown_expired_and_malformed_fingerprints(setup):
    _, req, fp = boot()
    refused(lambda: setup.svc.approval(req, "10.99.0.13"))
    with pytest.raises(BootError, match="no boot is waiting with fingerprint 0000-"):
        setup.boots.approve("0000-0000-0000-0000", setup.clock.now)
    with pytest.raises(BootError, match="'xyz' is not a boot fingerprint"):
        setup.boots.approve("xyz", setup.clock.now)
    # the node stopped asking (switched off, rebooted with a new key): too late to approve
    with pytest.raises(BootError, match=f"{fp} \\({NODE}\\) expired: it last asked 16 min"):
        setup.boots.approve(fp, setup.clock.now + dt.timedelta(minutes=16))
    assert BootError.exit_code == 2
    assert normal_fingerprint(fp.replace("-", " ")) == fp


def test_a_tpm_node_without_tpm_proof_is_refused(setup):
    _, req, _ = boot("node01", "10.99.0.11")
    err = refused(lambda: setup.svc.approval(req, "10.99.0.11"))
    assert err.code == "tpm_required" and "attestation: tpm" in err.reason
    assert setup.boots.entries() == []  # nothing recorded for an admin to approve by mistake


def test_identity_checks_hold_for_boots_without_tpm(setup):
    _, req, _ = boot(csr_node="node02")
    err = refused(lambda: setup.svc.approval(req, "10.99.0.13"))
    assert (err.code, err.reason) == ("wrong_identity", "the CSR names ['node02'], not node03")
    _, req, _ = boot(address="10.99.0.12")
    assert refused(lambda: setup.svc.approval(req, "10.99.0.13")).code == "wrong_identity"
    _, req, _ = boot("node77", "10.99.0.77")
    assert refused(lambda: setup.svc.approval(req, "x")).code == "unknown_node"
    assert setup.boots.entries() == []
    # a revoked node waits for nothing: refused before it is recorded
    setup.pki.issue(
        Identity(NODE, f"{NODE}.chaos.lan", ipaddress.IPv4Address(ADDRESS)), "chaos-lab", T0, 1
    )
    setup.pki.revoke(NODE, T0, 1)
    _, req, _ = boot()
    assert refused(lambda: setup.svc.approval(req, "10.99.0.13")).code == "revoked"
    assert setup.boots.entries() == []


def test_boots_are_bounded(tmp_path):
    store = BootStore(tmp_path / "boots.json", limit=3)
    for i in range(5):
        store.ask(
            f"{i:04x}-0000-0000-0000",
            f"sha256:{i:064x}",
            NODE,
            MACS,
            "x",
            T0 + dt.timedelta(seconds=i),
        )
    assert [b.fingerprint[:4] for b in store.entries()] == ["0002", "0003", "0004"]


def test_the_rendered_node_json_tells_the_boot_unit_which_attestation(tmp_path):
    """chaos.yaml -> node.json (the real render path) -> bootenroll -> the client's flag."""

    from builder.features import node_context  # noqa: PLC0415
    from builder.render import environment, render_templates  # noqa: PLC0415
    from chaosnode import bootenroll, enroll  # noqa: PLC0415
    from chaosnode.contract.node import NodeSettings  # noqa: PLC0415

    cluster = load_cluster(write_lab_config(tmp_path))[0]
    for name, attestation in (("node01", "tpm"), (NODE, "approval")):
        tree = render_templates(
            node_context(cluster, cluster.node(name)),
            environment(),
            ["common/etc/chaos/node.json.j2"],
        )
        node = NodeSettings.loads(tree["etc/chaos/node.json"].data)
        assert node.attestation == attestation
        assert enroll.parser().parse_args(bootenroll.enroll_argv(node)).attestation == attestation


def test_cli_approve_boot_refuses_unknown_and_malformed_fingerprints(workdir: Path, capsys):
    from builder.cli import main  # noqa: PLC0415

    config = str(workdir / "chaos.yaml")
    assert main(["enroll", "approve-boot", "3f2a-91bc-0d4e-7a11", "-c", config]) == 2
    assert "no boot is waiting with fingerprint 3f2a-91bc-0d4e-7a11" in capsys.readouterr().err
    assert main(["enroll", "approve-boot", "3f2a", "-c", config]) == 2
    assert "'3f2a' is not a boot fingerprint" in capsys.readouterr().err
    assert main(["enroll", "pending", "-c", config]) == 0
    assert "no machines are waiting" in capsys.readouterr().err
    # a boot that stopped asking 20 minutes ago: listed with its age, too late to approve
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    BootStore(workdir / "pki" / BOOTS_FILE).ask(
        "3f2a-91bc-0d4e-7a11", "sha256:" + "a" * 64, NODE, MACS, "10.99.0.13", long_ago
    )
    assert main(["enroll", "pending", "-c", config]) == 0
    out = capsys.readouterr().out
    assert "boot 3f2a-91bc-0d4e-7a11  as node03" in out and "age 20 min" in out
    assert main(["enroll", "approve-boot", "3F2A91BC0D4E7A11", "-c", config]) == 2
    assert "(node03) expired: it last asked 20 min ago" in capsys.readouterr().err
