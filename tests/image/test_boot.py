"""Boot the built image in QEMU along every path the lab uses and read the self-check line."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from imagetest import UNKNOWN_MAC, Built

from builder.image.qemu import Boot, Machine, boot

pytestmark = pytest.mark.image
BOOT_TIMEOUT = 420.0


def assert_node_ready(result: Boot, built: Built, name: str) -> None:
    """The machine took node NAME's public settings and came up to enrollment. These VMs have
    no TPM (and no enrollment service answers here), so enrollment fails and charon and tyd,
    which need its certificate, never start: a machine without a TPM is no member. The smoke
    lab gives every VM a TPM, enrolls it and checks READY."""
    node = built.cluster.node(name)
    assert result.line is not None, f"no CHAOS-READY/FAILED line:\n{result.console[-4000:]}"
    fields = result.fields
    assert fields["node"] == name
    assert fields["addr"] == str(node.address)
    assert fields["nft"] == "ok"
    assert fields["enroll"] == "failed"
    assert fields["charon"] == fields["tyd"] == "inactive"
    assert "chaos-enroll: cannot open the TPM" in result.console, result.console[-3000:]
    assert fields["disks"] == "none"
    assert not result.ready, result.line


@pytest.fixture(scope="module")
def disk(built: Built) -> Path:
    path = built.work / "lab-disk.img"
    path.write_bytes(b"CHAOS-DISK-CANARY" + os.urandom(8 * 1024 * 1024))
    return path


@pytest.fixture(scope="module")
def bios_iso_boot(built: Built, accel: list[str], disk: Path) -> tuple[Boot, str, str]:
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    node = built.cluster.node("node01")
    result = boot(
        Machine(accel=accel, mac=node.mac, cdrom=built.out / "chaos.iso", disks=[disk]),
        timeout=BOOT_TIMEOUT,
    )
    return result, before, hashlib.sha256(disk.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def uefi_iso_boot(built: Built, accel: list[str]) -> Boot:
    node = built.cluster.node("node02")
    return boot(
        Machine(
            accel=accel, mac=node.mac, cdrom=built.out / "chaos.iso", uefi=True, workdir=built.work
        ),
        timeout=BOOT_TIMEOUT,
    )


def test_iso_boots_under_bios(bios_iso_boot: tuple[Boot, str, str], built: Built) -> None:
    assert_node_ready(bios_iso_boot[0], built, "node01")


def test_local_disk_untouched_and_invisible(bios_iso_boot: tuple[Boot, str, str]) -> None:
    result, before, after = bios_iso_boot
    assert result.line is not None, result.console[-4000:]
    assert before == after
    assert result.fields["disks"] == "none"
    assert "vda" not in result.console


def test_iso_boots_under_uefi(uefi_iso_boot: Boot, built: Built) -> None:
    assert_node_ready(uefi_iso_boot, built, "node02")


def test_one_iso_gives_each_machine_its_own_identity(
    bios_iso_boot: tuple[Boot, str, str], uefi_iso_boot: Boot
) -> None:
    first, second = bios_iso_boot[0].fields, uefi_iso_boot.fields
    assert (first["node"], first["addr"]) == ("node01", "10.99.0.11")
    assert (second["node"], second["addr"]) == ("node02", "10.99.0.12")
    assert "this machine takes node node01's settings" in bios_iso_boot[0].console
    assert "this machine takes node node02's settings" in uefi_iso_boot.console


def test_pxe_with_ipxe_over_tftp(built: Built, accel: list[str]) -> None:
    node = built.cluster.node("node02")
    result = boot(
        Machine(accel=accel, mac=node.mac, tftp=built.out / "pxe", bootfile="boot.ipxe"),
        timeout=BOOT_TIMEOUT,
    )
    assert_node_ready(result, built, "node02")
    # the PXE node gets its own overlay directly: no MAC lookup at boot
    assert "this machine takes node" not in result.console


def test_uefi_pxe_with_grub_over_tftp(built: Built, accel: list[str]) -> None:
    node = built.cluster.node("node03")
    result = boot(
        Machine(
            accel=accel,
            mac=node.mac,
            tftp=built.out / "pxe",
            bootfile="grubx64.efi",
            uefi=True,
            workdir=built.work,
        ),
        timeout=BOOT_TIMEOUT,
    )
    assert_node_ready(result, built, "node03")


def test_appended_overlay_and_selftest_poweroff(built: Built, accel: list[str]) -> None:
    """The node cpio appended to the base initrd (one file), chaos.selftest=1 powers off."""
    pxe = built.out / "pxe"
    joined = built.work / "node01-joined.img"
    joined.write_bytes((pxe / "initrd.img").read_bytes() + (pxe / "nodes/node01.cpio").read_bytes())
    node = built.cluster.node("node01")
    result = boot(
        Machine(
            accel=accel,
            mac=node.mac,
            kernel=pxe / "vmlinuz",
            initrd=joined,
            append="console=ttyS0,115200 quiet chaos.selftest=1",
        ),
        timeout=BOOT_TIMEOUT,
        wait_for_exit=True,
    )
    assert_node_ready(result, built, "node01")
    assert result.exited_by_itself, "chaos.selftest=1 did not power the machine off"
    assert result.exit_code == 0


def test_unknown_mac_gets_no_cluster_identity(built: Built, accel: list[str]) -> None:
    result = boot(
        Machine(accel=accel, mac=UNKNOWN_MAC, cdrom=built.out / "chaos.iso"), timeout=BOOT_TIMEOUT
    )
    assert result.line is not None, result.console[-4000:]
    assert "is not a node of this cluster image" in result.console
    assert result.line.startswith("CHAOS-FAILED")
    assert result.fields["node"] == "unknown"
    assert result.fields["addr"] == "none"
