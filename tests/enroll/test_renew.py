"""A running node renews its certificate near expiry: a new key made in RAM, the TPM proves
the machine again to the enrollment service, the same name and address. Not due: nothing
happens. Revoked, or the service down: the node keeps its current files. The client runs
under Debian's /usr/bin/python3 -I, as on a node, against a software TPM on loopback."""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from chaostest import ROOT, node_settings
from conftest import APPROVAL_NODE, NODE_ENV, NODE_PYTHON, Lab, needs_swtpm
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_approval_enroll import boots, cli, wait_for

from builder.config import load_cluster
from builder.enroll import server as server_mod
from builder.enroll import service
from builder.enroll.swtpm import free_ports
from builder.image.base import ENABLE_UNITS
from builder.model import KeyType
from builder.pki import Identity, Pki, cert_pem, key_pem, make_node_cert, new_key, sans_of
from builder.security.model import SecurityModel
from chaosnode.renew import check

RENEW_BOOTSTRAP = (
    f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    "from chaosnode.renew import main; sys.exit(main())"
)
HOURS = 16  # the default chaos.yaml's security.node_cert_hours
UNIT_DIR = ROOT / "overlays/enroll/etc/systemd/system"


@dataclass
class NodeFiles:
    """What a running node has: its public settings, key, certificate and CRL."""

    dir: Path
    name: str
    address: str

    def __post_init__(self) -> None:
        self.key, self.cert, self.crl, self.node_json = (
            self.dir / f for f in ("node.key", "node.pem", "cluster.crl", "node.json")
        )

    def settings(self, url: str, attestation: str = "tpm") -> None:
        self.node_json.write_text(
            node_settings(
                name=self.name, address=self.address, attestation=attestation, enroll_url=url
            ).dumps("test")
        )

    def snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (self.key, self.cert, self.crl)}


def node_files(
    lab: Lab,
    name: str = "node01",
    address: str = "10.99.0.11",
    hours_old: float = 0.0,
    attestation: str = "tpm",
) -> NodeFiles:
    """A node whose certificate (HOURS long, from the cluster CA) was issued hours_old ago."""
    node = NodeFiles(lab.root / "node" / name, name, address)
    node.dir.mkdir(parents=True)
    node.settings(lab.url, attestation)
    key = new_key(lab.cluster.section(SecurityModel).security.key_type)
    ca_key, ca = lab.pki.ca()
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_old)
    ident = Identity(name, f"{name}.chaos.lan", ipaddress.IPv4Address(address))
    cert = make_node_cert(ident, lab.cluster.cluster.name, key, ca_key, ca, issued, HOURS / 24)
    node.key.write_bytes(key_pem(key))
    node.key.chmod(0o600)
    node.cert.write_bytes(cert_pem(cert))
    node.crl.write_bytes(lab.pki.crl_pem())
    return node


def renew_argv(lab: Lab, node: NodeFiles, *extra: str) -> list[str]:
    return [
        NODE_PYTHON,
        "-I",
        "-c",
        RENEW_BOOTSTRAP,
        "--node-json",
        str(node.node_json),
        "--ca",
        str(lab.ca_file),
        "--key",
        str(node.key),
        "--cert",
        str(node.cert),
        "--crl",
        str(node.crl),
        "--tcti",
        lab.tpm_a.tcti,
        "--reload",
        "none",
        *extra,
    ]


def renew(
    lab: Lab, node: NodeFiles, *extra: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        renew_argv(lab, node, *extra), capture_output=True, text=True, timeout=timeout, env=NODE_ENV
    )


def public(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@needs_swtpm
def test_due_renewal_gives_a_new_certificate_for_a_new_key_same_name_and_address(lab: Lab):
    node = node_files(lab, hours_old=11)  # 5h left of 16h: below a third
    old = x509.load_pem_x509_certificate(node.cert.read_bytes())
    old_key = node.key.read_bytes()
    r = renew(lab, node)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "node01: renewing (4h5" in r.stderr and "attested by the TPM again" in r.stderr
    assert (
        f"CHAOS: node node01 renewed its certificate: new key made on this machine "
        f"(TPM EK {lab.ek_a})" in r.stdout
    )
    new = x509.load_pem_x509_certificate(node.cert.read_bytes())
    assert node.key.read_bytes() != old_key
    assert oct(node.key.stat().st_mode & 0o777) == "0o600"
    key = serialization.load_pem_private_key(node.key.read_bytes(), None)
    assert (
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == public(new)
        != public(old)
    )
    assert new.serial_number != old.serial_number
    assert new.subject == old.subject
    assert (
        sorted(sans_of(new)) == sorted(sans_of(old)) == ["10.99.0.11", "node01", "node01.chaos.lan"]
    )
    new.verify_directly_issued_by(lab.pki.ca_cert())
    assert new.not_valid_after_utc - old.not_valid_after_utc > dt.timedelta(hours=10)
    assert (lab.pki.paths.enrolled / "node01.pem").read_bytes() == node.cert.read_bytes()
    assert not list(node.dir.glob(".*tmp"))  # no staging file left behind
    # the renewed pair is not due again: the next timer run leaves it alone
    again = renew(lab, node)
    assert again.returncode == 0 and "renewing from" in again.stderr, again.stderr


@needs_swtpm
def test_the_head_renews_again_and_again_as_it_stays_up_for_weeks(lab: Lab):
    """The head (node01) is up for weeks: each renewal (forced here; the timer renews once a
    third of the lifetime is left) makes a new key on the machine, asks the same TPM again and
    gets a new certificate for the same name and address, signed by the CA and kept by the
    service."""
    node = node_files(lab, hours_old=1)
    serials, keys = [], []
    for round_ in range(3):
        r = renew(lab, node, "--force")
        assert r.returncode == 0, f"renewal {round_ + 1}: {r.stderr}"
        assert "attested by the TPM again" in r.stderr and "Traceback" not in r.stderr
        cert = x509.load_pem_x509_certificate(node.cert.read_bytes())
        cert.verify_directly_issued_by(lab.pki.ca_cert())
        assert sorted(sans_of(cert)) == ["10.99.0.11", "node01", "node01.chaos.lan"]
        assert (lab.pki.paths.enrolled / "node01.pem").read_bytes() == node.cert.read_bytes()
        serials.append(cert.serial_number)
        keys.append(public(cert))
    assert len(set(serials)) == 3 and len(set(keys)) == 3, "a new key and serial every time"


@needs_swtpm
def test_not_due_changes_nothing_and_asks_nobody(lab: Lab):
    node = node_files(lab, hours_old=10)  # 6h left of 16h: above a third
    before = node.snapshot()
    r = renew(lab, node)
    assert r.returncode == 0, r.stderr
    assert "node01: certificate valid until" in r.stderr and "(5h5" in r.stderr
    assert node.snapshot() == before
    assert lab.bodies == []  # the service heard nothing


@needs_swtpm
def test_revoked_node_is_refused_and_keeps_its_files(lab: Lab):
    first = lab.client(lab.tpm_a, out=lab.root / "node/node01")  # enrolled at boot
    assert first.returncode == 0, first.stderr
    node = NodeFiles(lab.root / "node/node01", "node01", "10.99.0.11")
    node.settings(lab.url)
    node.crl.write_bytes(lab.pki.crl_pem())
    lab.pki.revoke("node01", dt.datetime.now(dt.UTC), 1)
    before = node.snapshot()
    r = renew(lab, node, "--force")
    assert r.returncode == 1
    assert (
        "renewal failed: refused: revoked: node node01 is revoked; it gets no "
        "certificate; keeping the current key and certificate" in r.stderr
    ), r.stderr
    assert "Traceback" not in r.stderr
    assert node.snapshot() == before
    assert not (lab.pki.paths.enrolled / "node01.pem").exists()


@needs_swtpm
def test_node_removed_from_chaos_yaml_is_refused_and_keeps_its_files(lab: Lab):
    """The admin removed node02 from chaos.yaml and restarted the service."""
    removed = lab.root / "removed" / "chaos.yaml"
    removed.parent.mkdir()
    text = lab.config.read_text()
    block = '  - name: node02\n    mac: "52:54:00:99:00:12"\n    address: 10.99.0.12\n'
    assert block in text
    removed.write_text(text.replace(block, ""))
    cluster = load_cluster(removed)[0]
    settings = service.ServiceSettings(ipaddress.IPv4Address("127.0.0.1"), free_ports(1))
    server = server_mod.open_service(cluster, removed, lab.pki, settings)
    server.start_background()
    try:
        node = node_files(lab, "node02", "10.99.0.12", hours_old=12)
        node.settings(server.url)
        before = node.snapshot()
        r = renew(lab, node)
    finally:
        server.stop()
    assert r.returncode == 1
    assert (
        "renewal failed: refused: unknown_node: no node named 'node02' in chaos.yaml; "
        "keeping the current key and certificate" in r.stderr
    ), r.stderr
    assert node.snapshot() == before


@needs_swtpm
def test_service_down_keeps_the_files_and_the_next_run_renews(lab: Lab):
    node = node_files(lab, hours_old=12)
    before = node.snapshot()
    dead = free_ports(1)
    node.settings(f"https://127.0.0.1:{dead}")
    r = renew(lab, node, "--max-time", "3")
    assert r.returncode == 1
    assert f"cannot reach 127.0.0.1:{dead}" in r.stderr
    assert (
        "renewal failed: no certificate within 3 s; giving up; keeping the current key "
        "and certificate (valid until"
        in r.stderr
        and "chaos-renew.timer tries again" in r.stderr
    ), r.stderr
    assert "Traceback" not in r.stderr
    assert node.snapshot() == before
    # the timer's next run, with the service back, renews
    node.settings(lab.url)
    r = renew(lab, node)
    assert r.returncode == 0, r.stderr
    assert node.cert.read_bytes() != before["node.pem"]


@needs_swtpm
def test_a_second_renewal_while_one_runs_leaves_it_be(lab: Lab):
    node = node_files(lab, hours_old=12)
    before = node.snapshot()
    fd = os.open(node.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running renewal holds
        r = renew(lab, node, "--force")
    finally:
        os.close(fd)
    assert r.returncode == 0 and "another renewal is running" in r.stderr, r.stderr
    assert node.snapshot() == before and lab.bodies == []


@needs_swtpm
def test_a_node_without_a_tpm_does_not_renew_unattended(lab: Lab):
    name, address = APPROVAL_NODE
    node = node_files(lab, name, address, hours_old=12, attestation="approval")
    before = node.snapshot()
    r = renew(lab, node)
    assert r.returncode == 0, r.stderr
    assert (
        f"CHAOS: node {name} has no TPM (attestation: approval) and cannot renew "
        "unattended" in r.stdout
    )
    assert "--force" in r.stdout
    assert node.snapshot() == before
    assert lab.bodies == []


@needs_swtpm
def test_an_admin_renews_a_node_without_a_tpm_by_hand_and_approves_its_fingerprint(
    lab: Lab, capsys: pytest.CaptureFixture[str]
):
    name, address = APPROVAL_NODE
    node = node_files(lab, name, address, hours_old=12, attestation="approval")
    old = node.snapshot()
    argv = renew_argv(lab, node, "--force")
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=NODE_ENV
    )
    try:
        wait_for(lambda: any(b.attempts >= 1 for b in boots(lab).entries()))
        assert proc.poll() is None and node.snapshot() == old  # nothing before the admin acts
        [boot] = boots(lab).entries()
        assert boot.node == name
        assert cli(lab, capsys, "approve-boot", boot.fingerprint)[0] == 0
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"approve-boot {boot.fingerprint} (node {name})" in err  # shown on its console
    assert (
        f"renewed its certificate: new key made on this machine (boot {boot.fingerprint} "
        "approved by an admin, no TPM)" in out
    )
    new = x509.load_pem_x509_certificate(node.cert.read_bytes())
    assert public(new) != public(x509.load_pem_x509_certificate(old["node.pem"]))
    assert sorted(sans_of(new)) == [address, name, f"{name}.chaos.lan"]


def test_due_follows_the_lifetime_and_a_mismatched_pair(tmp_path: Path):
    pki = Pki(tmp_path / "pki", KeyType.ED25519)
    now = dt.datetime(2026, 11, 27, 17, tzinfo=dt.UTC)
    pki.init_ca("lab", now, 30)
    ca_key, ca = pki.ca()
    ident = Identity("node01", "node01.chaos.lan", ipaddress.IPv4Address("10.99.0.11"))
    key, other = new_key(KeyType.ED25519), new_key(KeyType.ECDSA_P256)
    for hours in (1, 16, 168):
        cert = cert_pem(make_node_cert(ident, "lab", key, ca_key, ca, now, hours / 24))
        life = dt.timedelta(hours=hours, minutes=5)  # notBefore is 5 min back
        edge = now - dt.timedelta(minutes=5) + life * 2 / 3
        assert not check(cert, key_pem(key), edge - dt.timedelta(seconds=1)).due
        assert check(cert, key_pem(key), edge).due
        assert "expired" in check(cert, key_pem(key), now + life).why
        assert check(cert, key_pem(other), now).why == "the key is not the certificate's"
        assert check(cert, None, now).due
    assert check(b"garbage", None, now).why.startswith("the certificate is unreadable")


def test_the_timer_runs_the_renewal_again_and_the_image_enables_it():
    timer = (UNIT_DIR / "chaos-renew.timer").read_text()
    assert "OnUnitActiveSec=10min" in timer and "[Install]\nWantedBy=timers.target" in timer
    service = (UNIT_DIR / "chaos-renew.service").read_text()
    assert "ExecStart=/usr/bin/python3 -I -m chaosnode.renew\n" in service
    assert "chaos-renew.timer" in ENABLE_UNITS


@pytest.mark.parametrize("missing", ["node.json", "node.pem"])
def test_missing_settings_or_certificate_is_one_clear_line(lab: Lab, missing: str):
    node = node_files(lab)
    (node.dir / missing).unlink()
    r = renew(lab, node)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert (
        "chaos-identity" if missing == "node.json" else "chaos-enroll.service enrolls"
    ) in r.stderr
