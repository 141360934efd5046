"""Measured boot in enrollment, end to end on loopback: the service sends a nonce with the
challenge, the node's client (/usr/bin/python3 -I, as on a node) quotes sha256 PCRs 0-9 and
14 of its (software) TPM and sends the UEFI event log; the service verifies them against
out/measured-reference.json. Enforce refuses a deviation with its reason; audit logs and
counts it and enrolls; a `boot: legacy-bios` node skips only this check."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Lab, needs_swtpm, write_lab_config
from measured.measuredlab import SERVER, make_reference

from builder.config import load_cluster
from builder.enroll import registry
from builder.enroll import server as server_mod
from builder.enroll.registry import approve
from builder.enroll.service import ServiceSettings
from builder.enroll.swtpm import SoftTpm, free_ports
from builder.measured.reference import REFERENCE_FILE, Reference, write_reference
from builder.measured.synthetic import Boot, boot_events, extend_tpm, log_bytes
from builder.pki import pki_at
from builder.security.model import SecurityModel
from chaosnode.tpm import Tpm

pytestmark = needs_swtpm
ROGUE = "ab" * 32
GENUINE = Boot()


class MeasuredLab:
    def __init__(self, lab: Lab, reference: Reference) -> None:
        self.lab, self.reference = lab, reference

    @property
    def counts(self) -> dict[str, int]:
        check = self.lab.server.enrollment.boot_check
        assert check is not None
        return dict(check.counts)

    def enroll(
        self,
        tpm: SoftTpm,
        log: Path,
        *extra: str,
        node: str = "node01",
        address: str = "10.99.0.11",
    ) -> subprocess.CompletedProcess[str]:
        return self.lab.client(tpm, node, address, "--event-log", str(log), *extra)

    def boot(self, tpm: SoftTpm, node: str, boot: Boot = GENUINE) -> Path:
        """Extend `tpm` as this boot of `node` measures; the event log file it leaves."""
        events = boot_events(self.reference, self.reference.node(node), SERVER, boot)
        with Tpm(tpm.tcti) as t:
            extend_tpm(t.esapi, events)
        path = self.lab.root / f"eventlog-{node}.bin"
        path.write_bytes(log_bytes(events))
        return path


@pytest.fixture
def measured_lab(
    tmp_path: Path, soft_tpms: Callable[[], SoftTpm]
) -> Iterator[Callable[[str], MeasuredLab]]:
    servers: list[server_mod.EnrollServer] = []

    def start(mode: str) -> MeasuredLab:
        config = write_lab_config(tmp_path, measured_boot=mode)
        text = config.read_text()
        config.write_text(
            text.replace("  - name: node02\n", "  - name: node02\n    boot: legacy-bios\n")
        )
        cluster = load_cluster(config)[0]
        assert (
            cluster.section(SecurityModel).security.measured_boot.value == mode
        )  # a bare `off` too (YAML 1.1)
        pki = pki_at(cluster, tmp_path / "pki")
        pki.init_ca(cluster.cluster.name, dt.datetime.now(dt.UTC), 30)
        tpm_a, tpm_b = soft_tpms(), soft_tpms()
        ek_a = tpm_a.ek_hash()
        path = registry.registry_path(cluster, config)
        approve(path, cluster, ek_a, "node01", "test TPM A")
        approve(path, cluster, tpm_b.ek_hash(), "node02", "test TPM B (legacy BIOS)")
        reference = make_reference(tmp_path / "boot")
        (tmp_path / "out").mkdir()
        write_reference(reference, tmp_path / "out" / REFERENCE_FILE)
        settings = ServiceSettings(
            ipaddress.IPv4Address("127.0.0.1"), free_ports(1), rate_per_second=1000, burst=1000
        )
        server = server_mod.open_service(cluster, config, pki, settings)
        server.start_background()
        servers.append(server)
        return MeasuredLab(
            Lab(tmp_path, config, cluster, pki, server, tpm_a, tpm_b, ek_a), reference
        )

    yield start
    for server in servers:
        server.stop()


def test_a_genuine_boot_enrolls_under_enforce(measured_lab, caplog):
    caplog.set_level(logging.INFO, logger="chaos.enroll")
    m = measured_lab("enforce")
    r = m.enroll(m.lab.tpm_a, m.boot(m.lab.tpm_a, "node01"))
    assert r.returncode == 0, r.stderr
    assert m.counts == {"accepted": 1}
    assert "measured boot of node01: a genuine boot of this build" in caplog.text


def test_another_initrd_is_refused_under_enforce_with_its_reason(measured_lab, caplog):
    caplog.set_level(logging.INFO, logger="chaos.enroll")
    m = measured_lab("enforce")
    node = m.reference.node("node01")
    log = m.boot(
        m.lab.tpm_a,
        "node01",
        Boot(initrds=(("(tftp)/initrd.img", ROGUE), ("(tftp)/nodes/node01.cpio", node.overlay))),
    )
    r = m.enroll(m.lab.tpm_a, log, "--max-time", "20")
    assert r.returncode == 1
    assert (
        "refused: unmeasured_boot: measured boot: PCR 9: an initrd this build did not "
        "make for node01 ('(tftp)/initrd.img'" in r.stderr
    )
    assert "Traceback" not in r.stderr
    assert m.counts == {"refused unknown_file": 1}
    assert not (m.lab.root / "out/node01/node.pem").exists()
    assert "refused unmeasured_boot: measured boot: PCR 9" in caplog.text


def test_a_refused_boot_asks_once_and_says_so_when_started_again(measured_lab):
    """Units that want tyd start chaos-enroll again after it failed; the same boot must not
    ask again (its measurements cannot change), and serve sees one refusal."""
    m = measured_lab("enforce")
    log = m.boot(m.lab.tpm_a, "node01", Boot(secure_boot=False))
    kept = m.lab.root / "run" / "enroll-refused"
    first = m.enroll(m.lab.tpm_a, log, "--max-time", "20", "--refusal-file", str(kept))
    again = m.enroll(m.lab.tpm_a, log, "--max-time", "20", "--refusal-file", str(kept))
    assert first.returncode == again.returncode == 1
    assert "Secure Boot is off" in kept.read_text()
    assert (
        "not asking again in this boot (the next boot asks): refused: unmeasured_boot: "
        "measured boot: Secure Boot is off" in again.stderr
    )
    assert m.counts == {"refused secure_boot_off": 1}
    kept.unlink()  # the next boot (a fresh tmpfs) asks again
    m.enroll(m.lab.tpm_a, log, "--max-time", "20", "--refusal-file", str(kept))
    assert m.counts == {"refused secure_boot_off": 2}


def test_secure_boot_off_is_refused_and_a_missing_log_too(measured_lab):
    m = measured_lab("enforce")
    log = m.boot(m.lab.tpm_a, "node01", Boot(secure_boot=False))
    r = m.enroll(m.lab.tpm_a, log, "--max-time", "20")
    assert "refused: unmeasured_boot: measured boot: Secure Boot is off" in r.stderr
    r = m.enroll(m.lab.tpm_a, m.lab.root / "none", "--max-time", "20")
    assert "no UEFI event log to send" in r.stderr
    assert "refused: unmeasured_boot: measured boot: the event log is empty" in r.stderr


def test_audit_logs_and_counts_a_deviation_and_enrolls(measured_lab, caplog):
    caplog.set_level(logging.INFO, logger="chaos.enroll")
    m = measured_lab("audit")
    log = m.boot(m.lab.tpm_a, "node01", Boot(cmdline="console=ttyS0 init=/bin/sh"))
    r = m.enroll(m.lab.tpm_a, log)
    assert r.returncode == 0, r.stderr
    assert m.counts == {"refused grub_command": 1}
    assert "measured boot of node01 deviates (audit): " in caplog.text
    assert "kernel command line differs" in caplog.text


def test_a_legacy_bios_node_skips_only_the_measurement(measured_lab):
    m = measured_lab("enforce")
    r = m.enroll(m.lab.tpm_b, m.lab.root / "none", node="node02", address="10.99.0.12")
    assert r.returncode == 0, r.stderr
    assert "no UEFI event log" not in r.stderr  # no nonce was sent: no quote, no log
    assert m.counts == {"unmeasured legacy-bios": 1}
    # the TPM is still proven: another TPM for node02 is refused as before
    r = m.lab.client(m.lab.tpm_a, "node02", "10.99.0.12", "--max-time", "5")
    assert "registered for node01, not node02" in r.stderr


def test_off_sends_no_nonce_and_checks_nothing(measured_lab):
    m = measured_lab("off")
    r = m.enroll(m.lab.tpm_a, m.lab.root / "none")
    assert r.returncode == 0, r.stderr
    assert "no UEFI event log" not in r.stderr
    assert m.counts == {}
