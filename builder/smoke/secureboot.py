"""The smoke lab under real UEFI firmware with Secure Boot enforced (scenario key
`secure_boot`, security.measured_boot: enforce): the members boot UEFI PXE -> signed shim
-> signed net GRUB -> the signed kernel and must hold a certificate their measured boot
earned; then two machines whose TPMs ARE registered get nothing: one boots this build's
signed chain with a node initrd the build did not make (an attacker's bytes appended on
the TFTP server), one boots with Secure Boot off."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Protocol

from builder.enroll.registry import approve, registry_path
from builder.image import cpio
from builder.model import Cluster
from builder.smoke import tpms
from builder.smoke.firmware import Firmware
from builder.smoke.lab import Guest
from builder.smoke.scenario import Scenario
from chaosnode.contract.paths import MUNGE_KEY, NODE_CERT_PATH


class Report(Protocol):
    def phase(self, text: str) -> None: ...
    def check(self, title: str, ok: bool, detail: str = "") -> bool: ...


class Smoke(Protocol):
    """What these checks need of a running lab (builder.smoke.runner.Smoke)."""

    scenario: Scenario
    cluster: Cluster
    config: Path
    results: Path
    out: Path
    members: list[str]
    guests: dict[str, Guest]
    boot_timeout: float

    @property
    def report(self) -> Report: ...

    def enrolled(self) -> set[str]: ...
    def start_guest(
        self,
        name: str,
        mac: str,
        boot: str,
        media: dict[str, Path],
        firmware: Firmware | None = None,
    ) -> Guest: ...


# the kernel's log (`quiet` keeps it off the console, as it does the EFI stub's line)
KERNEL_SECURE = "secureboot: Secure boot enabled"
# off: "Secure boot disabled", or "could not be determined" when the EFI stub did not run
KERNEL_NOT_SECURE = re.compile(r"secureboot: Secure boot (disabled|could not be determined)")
MEASURED_REFUSED = re.compile(r"chaos-enroll: refused: unmeasured_boot: .*")
ATTACKER_FILE = "etc/systemd/system/getty@tty1.service.d/autologin.conf"
ATTACKER_BYTES = b"[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root %I\n"


def firmware_for(smoke: Smoke) -> Firmware:
    """The lab PCs' firmware (scenario key `firmware`)."""
    return Firmware(smoke.scenario.firmware)


def check_members(smoke: Smoke) -> None:
    """Each member booted with Secure Boot on and was enrolled on a genuine measured boot."""
    log = (smoke.results / "serve.log").read_text(errors="replace")
    enrolled = smoke.enrolled()
    for name in smoke.members:
        smoke.report.check(
            f"{name}: booted with Secure Boot enforced (the kernel says {KERNEL_SECURE!r})",
            KERNEL_SECURE in kernel_log(smoke, name),
        )
        genuine = f"measured boot of {name}: a genuine boot of this build" in log
        smoke.report.check(
            f"{name}: its certificate was issued on a genuine measured boot "
            "(quote + event log checked against out/measured-reference.json)",
            genuine and name in enrolled,
        )


def kernel_log(smoke: Smoke, name: str) -> str:
    return smoke.guests[name].exec(["journalctl", "-k", "-b", "--no-pager", "-o", "cat"])[1]


def register(smoke: Smoke, names: list[str]) -> None:
    """The negative machines' TPMs are registered for their nodes: only the boot is wrong."""
    registry = registry_path(smoke.cluster, smoke.config)
    for name in names:
        approve(
            registry,
            smoke.cluster,
            tpms.ek_hash_of(smoke.results / name / "tpm"),
            name,
            comment="smoke lab swtpm (measured-boot negative)",
        )


def tamper(smoke: Smoke, name: str) -> None:
    """An attacker with write access to the TFTP tree appends an overlay of its own to the
    node's initrd (root autologin on tty1): same signed shim, GRUB and kernel."""
    append_attacker_overlay(smoke.out / "pxe" / "nodes" / f"{name}.cpio")


def append_attacker_overlay(node_cpio: Path) -> None:
    """The attacker's bytes after a node initrd (the kernel unpacks both, the later wins)."""
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / ATTACKER_FILE
        path.parent.mkdir(parents=True)
        path.write_bytes(ATTACKER_BYTES)
        extra = cpio.pack_tree(Path(work), int(time.time()))
    data = node_cpio.read_bytes()
    node_cpio.write_bytes(data + b"\0" * (-len(data) % 4) + extra)  # the served link follows


def check_refused(smoke: Smoke, name: str, firmware: Firmware, reason: str) -> None:
    """Boot `name` (registered TPM) and show it got no certificate and no munge key."""
    node = smoke.cluster.node(name)
    started = time.monotonic()
    guest = smoke.start_guest(name, node.mac, "pxe", {}, firmware)
    line = guest.wait_console(MEASURED_REFUSED, smoke.boot_timeout)
    smoke.report.phase(
        f"{name} ({firmware.value}) after {time.monotonic() - started:.0f}s: {line[:200]}"
    )
    log = (smoke.results / "serve.log").read_text(errors="replace")
    logged = re.search(rf"measured boot of {name} refused: [^\n]*{re.escape(reason)}", log)
    smoke.report.check(
        f"{name}: refused as unmeasured_boot, serve logged why ({reason})",
        MEASURED_REFUSED.search(line) is not None and logged is not None,
        logged.group(0)[:240] if logged else "no such line in serve.log",
    )
    _, held = guest.exec(["ls", MUNGE_KEY, NODE_CERT_PATH])
    smoke.report.check(
        f"{name}: holds no certificate and no munge key",
        name not in smoke.enrolled() and held.count("No such file") == 2,
        held.strip()[:240],
    )


def check_negatives(smoke: Smoke) -> None:
    lab = smoke.scenario.secure_boot
    assert lab is not None
    register(smoke, [lab.tampered, lab.secure_boot_off])
    tamper(smoke, lab.tampered)
    check_refused(
        smoke,
        lab.tampered,
        Firmware.SECURE_BOOT,
        f"PCR 9: an initrd this build did not make for {lab.tampered}",
    )
    # Secure Boot off: signed GRUB starts the kernel without the event log hand-over, so the
    # node has no log to send (with a log, PCR 7 would say "Secure Boot is off")
    check_refused(smoke, lab.secure_boot_off, Firmware.SECURE_BOOT_OFF, "the event log is empty")
    smoke.report.check(
        f"{lab.tampered}: booted the signed chain with Secure Boot on",
        KERNEL_SECURE in kernel_log(smoke, lab.tampered),
    )
    smoke.report.check(
        f"{lab.secure_boot_off}: booted with Secure Boot off",
        KERNEL_NOT_SECURE.search(kernel_log(smoke, lab.secure_boot_off)) is not None,
    )
