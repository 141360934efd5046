"""The ISO's UEFI path is what the reference expects: the EFI image holds Debian's signed
shim (as BOOTX64.EFI) and signed disk GRUB byte for byte and nothing else but GRUB's config
(rendered from templates/iso/grub.cfg.j2, golden file), hardened like the net config; and
the verifier accepts a genuine ISO boot of any node and refuses its deviations."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from chaostest import ROOT
from measuredlab import BASE_KEY, BUNDLE, MARKER, NODE, cluster
from test_verify import AK, NONCE, evidence, refused

from builder.config import load_cluster
from builder.image.iso import EFI_FILES, EFI_GRUB, EFI_GRUB_CFG, EFI_SHIM, grub_cfg, make_efi_image
from builder.measured.authenticode import authenticode_file
from builder.measured.synthetic import Boot
from builder.measured.verify import verify_boot

GOLDEN = ROOT / "tests" / "golden" / "iso" / "grub.cfg"
UPDATE = os.environ.get("CHAOS_UPDATE_GOLDEN") == "1"
ISO = Boot(iso=True)
MTOOLS = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def test_the_iso_grub_config_matches_its_golden_file():
    c, _ = load_cluster(ROOT / "tests" / "golden" / "all.yaml")
    text = grub_cfg(SimpleNamespace(cluster=c, base_key=BASE_KEY))  # type: ignore[arg-type]
    if UPDATE:
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), f"{GOLDEN} differs; run make golden and review"


@pytest.fixture
def efi(reference, tmp_path: Path) -> Path:
    """The ISO's EFI image, unpacked: every file in it, by its path."""
    work = tmp_path / "work"
    work.mkdir()
    image = make_efi_image(SimpleNamespace(cluster=cluster(), base_key=BASE_KEY), work)  # type: ignore[arg-type]
    unpacked = tmp_path / "efi"
    unpacked.mkdir()
    subprocess.run(["mcopy", "-s", "-i", image, "::/*", unpacked], check=True, env=MTOOLS)
    return unpacked


def files_in(tree: Path) -> set[str]:
    return {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}


def test_the_efi_image_holds_exactly_the_signed_binaries_and_the_config(efi):
    assert files_in(efi) == {EFI_SHIM, EFI_GRUB, EFI_GRUB_CFG}  # no fbx64, no MokManager
    for path, package_file in EFI_FILES.items():
        assert (efi / path).read_bytes() == package_file.read_bytes(), path


def test_the_reference_pins_what_the_efi_image_boots(reference, efi):
    apps = {a.name: a.authenticode for a in reference.applications}
    assert authenticode_file(efi / EFI_SHIM) == apps["shim"]
    assert authenticode_file(efi / EFI_GRUB) == apps["grub"]
    assert reference.iso is not None
    cfg = (efi / EFI_GRUB_CFG).read_bytes()
    assert hashlib.sha256(cfg).hexdigest() == reference.iso.grub_config
    assert reference.iso.overlay == hashlib.sha256(BUNDLE).hexdigest()
    # GRUB's `search --file` opens the marker and signed GRUB measures it (PCR 9, seen in
    # the iso lab): the reference knows its content
    assert reference.iso.marker == hashlib.sha256(MARKER).hexdigest()


def test_the_iso_grub_waits_for_no_one_and_never_exits(efi):
    cfg = (efi / EFI_GRUB_CFG).read_text()
    assert "set superusers=" in cfg and "password" not in cfg, "nobody can authenticate"
    assert "menuentry" not in cfg and "set timeout=0" in cfg
    assert cfg.rstrip().endswith("reboot") and "\nexit" not in cfg


def test_the_iso_path_puts_no_per_host_string_into_pcr_8(reference):
    assert reference.iso is not None
    commands = " ".join(reference.iso.grub_commands)
    for node in cluster().nodes:
        assert node.name not in commands and node.mac.lower() not in commands
    assert "linux /boot/vmlinuz " + reference.kernel_args in reference.iso.grub_commands


@pytest.mark.parametrize("node", [n.name for n in cluster().nodes])
def test_a_genuine_iso_boot_of_any_node_is_accepted(reference, node):
    assert verify_boot(evidence(reference, ISO, node), AK, NONCE, reference, node).node == node


def test_an_iso_with_another_node_bundle_is_refused_naming_pcr_9(reference):
    other = Boot(
        iso=True,
        initrds=(
            ("/boot/initrd.img", reference.initrd),
            ("/boot/nodes.cpio", hashlib.sha256(b"an attacker's bundle").hexdigest()),
        ),
    )
    err = refused(reference, evidence(reference, other))
    assert err.code == "unknown_file"
    assert f"PCR 9: an initrd this build did not make for {NODE}" in err.reason
    assert "the overlay of node01" in err.reason  # and the genuine one was not loaded


def test_a_marker_file_of_other_content_is_refused_naming_pcr_9(reference):
    from dataclasses import replace

    assert reference.iso is not None
    other = hashlib.sha256(b"another medium\n").hexdigest()
    err = refused(
        replace(reference, iso=replace(reference.iso, marker=other)), evidence(reference, ISO)
    )
    assert err.code == "unknown_file"
    assert f"PCR 9: a marker file (the ISO's) this build did not make for {NODE}" in err.reason


def test_an_iso_boot_is_refused_by_a_build_that_made_no_iso(reference):
    from dataclasses import replace

    err = refused(replace(reference, iso=None), evidence(reference, ISO))
    assert "PCR 4: this build's GRUB was not started" in err.reason
    assert "PCR 9: a GRUB config this build did not make" in err.reason


def test_an_edited_iso_command_line_is_refused(reference):
    err = refused(reference, evidence(reference, Boot(iso=True, cmdline="init=/bin/sh")))
    assert err.code == "command_line" or "kernel command line differs" in err.reason
