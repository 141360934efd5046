"""What a build leaves in out/, and that a second build reuses the base and repeats bytes."""

from __future__ import annotations

import subprocess

import pytest
from imagetest import CACHE_DIR, Built

from builder.image.audit import scan_tree, secrets_in
from builder.image.build import build_image
from builder.mungekey import known_secrets

pytestmark = pytest.mark.image


def test_outputs(built: Built) -> None:
    out = built.out
    assert (out / "chaos.iso").stat().st_size > 0
    iso = (out / "chaos.iso").read_bytes()[:1024]
    assert iso[510:512] == b"\x55\xaa"  # hybrid: an MBR for USB sticks
    assert iso[512:520] == b"EFI PART"  # and a GPT (-isohybrid-gpt-basdat) for UEFI
    pxe = out / "pxe"
    for name in (
        "vmlinuz",
        "initrd.img",
        "boot.ipxe",
        "undionly.kpxe",
        "ipxe.efi",
        "pxelinux.0",
        "ldlinux.c32",
        "pxelinux.cfg/default",
        "grubx64.efi",
    ):
        assert (pxe / name).is_file(), name
    for node in built.cluster.nodes:
        mac = node.mac.replace(":", "-")
        assert (pxe / "nodes" / f"{node.name}.cpio").is_file()
        script = (pxe / f"mac-{mac}.ipxe").read_text()
        assert f"initrd nodes/{node.name}.cpio" in script
        assert f"nodes/{node.name}.cpio" in (pxe / "pxelinux.cfg" / f"01-{mac}").read_text()
        assert f"nodes/{node.name}.cpio" in (pxe / "grub" / f"mac-{node.mac}.cfg").read_text()
    assert built.summary["nodes"] == len(built.cluster.nodes)
    assert set(built.summary["artifacts"]) >= {"chaos.iso", "pxe/initrd.img"}  # type: ignore


def test_rebuild_reuses_base_and_repeats_overlay_bytes(built: Built) -> None:
    again = built.work / "out-again"
    summary = build_image(built.cluster, built.nodes_dir, again, CACHE_DIR, repo_dir=built.repo)
    assert summary["base_key"] == built.summary["base_key"]
    skipped = {s["name"] for s in summary["steps"] if s["skipped"]}  # type: ignore
    assert {"install_rootfs", "copy_rootfs", "prune_modules", "pack_initrd"} <= skipped
    for node in built.cluster.nodes:
        rel = f"pxe/nodes/{node.name}.cpio"
        assert (again / rel).read_bytes() == (built.out / rel).read_bytes()
    assert (again / "pxe/initrd.img").read_bytes() == (built.out / "pxe/initrd.img").read_bytes()


def unpacked_base(built: Built) -> bytes:
    """The base cpio; the initrd carries up to 3 zero bytes of padding after the zstd frame."""
    data = (built.out / "pxe/initrd.img").read_bytes()
    assert len(data) % 4 == 0
    for pad in range(4):
        proc = subprocess.run(
            ["zstd", "-dc"], input=data[: len(data) - pad], capture_output=True, check=False
        )
        if proc.returncode == 0:
            return proc.stdout
    raise AssertionError(f"zstd cannot read the base initrd: {proc.stderr.decode()}")


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-c"], input=data, capture_output=True, check=True).stdout


def cpio_names(archive: bytes) -> list[str]:
    return (
        subprocess.run(["cpio", "-it", "--quiet"], input=archive, capture_output=True, check=True)
        .stdout.decode()
        .split("\n")
    )


def test_base_has_no_build_mirror_and_no_storage_drivers(built: Built) -> None:
    listing = unpacked_base(built)
    names = (
        subprocess.run(["cpio", "-it", "--quiet"], input=listing, capture_output=True, check=True)
        .stdout.decode()
        .split("\n")
    )
    assert not [n for n in names if n.startswith("etc/apt/sources.list")]
    assert "init" in names
    # charon resolves the migration scope's [tcp/12820] selectors through /etc/protocols
    assert "etc/protocols" in names and "etc/services" in names
    modules = [n for n in names if n.endswith(".ko")]
    assert any(n.endswith("/esp4.ko") for n in modules)
    assert any(n.endswith("/nf_tables.ko") for n in modules)
    assert any(n.endswith("/binfmt_misc.ko") for n in modules)
    for storage in ("ahci.ko", "nvme.ko", "sd_mod.ko", "virtio_blk.ko", "usb-storage.ko"):
        assert not [n for n in modules if n.endswith("/" + storage)], storage
    # bytecode only for what boots (tyd, chaosnode, vici, the stdlib they import), none for
    # the rest
    pyc = [n for n in names if "/__pycache__/" in n]
    assert "usr/local/lib/python3.11/dist-packages/tyd/__pycache__/daemon.cpython-311.pyc" in pyc
    assert any(n.startswith("usr/lib/python3.11/asyncio/__pycache__/") for n in pyc)
    assert not [
        n for n in pyc if n.startswith(("usr/lib/python3.11/pydoc", "usr/lib/python3.11/unittest/"))
    ]
    assert not [n for n in names if n.startswith("usr/share/man/")]


def test_no_private_key_anywhere_in_out(built: Built, tmp_path) -> None:
    """Everything a lab can get (the ISO's files, the PXE tree, every cpio and initrd,
    decompressed) holds public things only."""
    iso_files = tmp_path / "iso"
    subprocess.run(
        [
            "xorriso",
            "-osirrox",
            "on",
            "-indev",
            str(built.out / "chaos.iso"),
            "-extract",
            "/",
            str(iso_files),
        ],
        check=True,
        capture_output=True,
    )
    assert (iso_files / "live").exists() or list(iso_files.rglob("*.img")), "ISO not extracted"
    known = known_secrets(built.work / "pki")
    assert known, "the default cluster runs Slurm: its munge key is beside the CA"
    assert scan_tree(iso_files, known) == {}
    assert scan_tree(built.out, known) == {}
    assert secrets_in(unpacked_base(built), known) == []
    # the audit itself finds a key where there is one, the munge key by its bytes too
    assert secrets_in(b"etc/swanctl/private/node.key\0")
    [key] = known.values()
    assert secrets_in(zstd(b"x" * 1000 + key + b"y" * 1000), known) == list(known)
    # the package-made key of munge's postinst is not in the image
    assert not [n for n in cpio_names(unpacked_base(built)) if n.endswith("munge.key")]


def test_base_carries_the_tpm_client(built: Built) -> None:
    names = (
        subprocess.run(
            ["cpio", "-it", "--quiet"], input=unpacked_base(built), capture_output=True, check=True
        )
        .stdout.decode()
        .split("\n")
    )
    assert any(n.startswith("usr/lib/python3/dist-packages/tpm2_pytss/") for n in names)
    assert any("libtss2-tcti-device.so" in n for n in names)
    assert "usr/local/lib/python3.11/dist-packages/chaosnode/enroll.py" in names
    assert "etc/systemd/system/multi-user.target.wants/chaos-enroll.service" in names
    assert "etc/systemd/system/timers.target.wants/chaos-crl.timer" in names
    assert "etc/systemd/system/timers.target.wants/chaos-renew.timer" in names
