"""The Secure Boot PXE tree is what the reference expects: signed shim and net GRUB byte for
byte, GRUB's config and each node's config with the digests PCR 9 will show, hardened
configs, no fallback or MokManager; and the UEFI VM firmware the smoke lab boots."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from measuredlab import cluster

from builder.image.pxe import (
    GRUB_NET_CFG_PATH,
    GRUB_NET_EFI,
    SHIM_EFI,
    answer_paths,
    local_disk_answers,
    make_secure_boot_netboot,
)
from builder.measured.authenticode import authenticode_file
from builder.smoke import firmware
from builder.smoke.firmware import Firmware


@pytest.fixture
def tree(reference, tmp_path: Path) -> Path:
    c = cluster()
    pxe = tmp_path / "pxe"
    pxe.mkdir()
    make_secure_boot_netboot(SimpleNamespace(cluster=c, nodes=c.nodes), pxe)  # type: ignore[arg-type]
    return pxe


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_served_loaders_are_the_ones_the_reference_pins(reference, tree):
    apps = {a.name: a.authenticode for a in reference.applications}
    assert authenticode_file(tree / SHIM_EFI) == apps["shim"]
    assert authenticode_file(tree / GRUB_NET_EFI) == apps["grub-net"]
    assert sha256(tree / GRUB_NET_CFG_PATH) in reference.grub_configs
    for node in cluster().nodes:
        assert sha256(tree / answer_paths(node)[2]) == reference.node(node.name).grub_config


def test_no_fallback_or_mok_manager_and_no_other_efi_binary(tree):
    efi = sorted(p.name for p in tree.rglob("*.efi"))
    assert efi == sorted([SHIM_EFI, GRUB_NET_EFI])
    assert not any(p.name.startswith(("fb", "mm")) for p in tree.rglob("*"))


def test_grub_waits_for_no_one_and_offers_no_prompt(tree):
    cfg = (tree / GRUB_NET_CFG_PATH).read_text()
    assert "set superusers=" in cfg and "password" not in cfg, "nobody can authenticate"
    assert "menuentry" not in cfg and "set timeout=0" in cfg
    assert cfg.rstrip().endswith("reboot") and "\nexit" not in cfg
    for node in cluster().nodes:
        assert (tree / answer_paths(node)[2]).read_text().rstrip().endswith("boot\nreboot")
        assert local_disk_answers(node, "by day")[2].rstrip().endswith("reboot")


def test_only_the_mac_and_the_nodes_own_files_differ_in_grub_commands(reference):
    """Per-host strings in PCR 8: the configfile line (the MAC) and the node's initrd path,
    both expected by the reference; every other command is the same on every node."""
    nodes = reference.nodes
    common = set(nodes[0].grub_commands).intersection(*(n.grub_commands for n in nodes[1:]))
    for node in nodes:
        own = set(node.grub_commands) - common
        assert own == {
            f"configfile (tftp)/grub/mac-{node.mac}.cfg",
            f"initrd (tftp)/initrd.img (tftp)/nodes/{node.name}.cpio",
        }, own


@pytest.mark.parametrize("fw", [Firmware.SECURE_BOOT, Firmware.SECURE_BOOT_OFF])
def test_uefi_vms_get_q35_smm_and_a_private_variable_store(tmp_path, fw):
    if firmware.missing():
        pytest.skip(f"ovmf is not installed: {firmware.missing()}")
    args = firmware.qemu_args(fw, tmp_path)
    assert args[:2] == ["-machine", "q35,smm=on"]
    assert "driver=cfi.pflash01,property=secure,value=on" in args
    store = tmp_path / "ovmf-vars.fd"
    assert store.read_bytes() == firmware.VARS[fw.value].read_bytes()
    assert f"if=pflash,format=raw,unit=1,file={store}" in args
    assert f"readonly=on,file={firmware.OVMF_CODE}" in " ".join(args)
    assert firmware.nic_options(fw) == ",romfile=", "no unsigned iPXE option ROM"
    assert firmware.qemu_args(Firmware.BIOS, tmp_path) == ["-machine", "pc"]
