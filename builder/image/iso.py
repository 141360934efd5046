"""Step make_iso: one hybrid ISO (BIOS isolinux + UEFI), bootable from CD or USB stick.

The ISO holds the kernel, the base initrd and the node bundle (every node's overlay; the
machine picks its own by MAC) or, with --node, that one node's overlay.

Its UEFI boot is the Secure Boot chain, unchanged Debian binaries: Microsoft-signed shim as
EFI/BOOT/BOOTX64.EFI, which starts grubx64.efi beside itself (Debian-signed disk GRUB),
which sources $prefix/grub.cfg with prefix /EFI/debian of the device it came from (the FAT
image on a USB stick's GPT, the ISO 9660 tree on a CD: both hold the same config). No
fallback (fbx64) or MokManager on the medium: nothing writes boot entries. The config
(templates/iso/grub.cfg.j2) names no per-host string, so PCR 8 is the same on every PC.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from builder.hostconf import render_host
from builder.image.base import INITRD_NAME, KERNEL_NAME
from builder.image.context import BuildContext
from builder.image.pxe import HEADER, kernel_cmdline
from builder.measured.reference import GRUB_SIGNED, SHIM_SIGNED
from builder.run import run

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
ISOHDPFX = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
VOLUME_ID = "CHAOS"
NODES_NAME = "nodes.cpio"
# the UEFI files, as paths inside the EFI image (and, for the config, the ISO 9660 tree)
EFI_SHIM = "EFI/BOOT/BOOTX64.EFI"  # the removable-media path the firmware starts
EFI_GRUB = "EFI/BOOT/grubx64.efi"  # shim starts this name from its own directory
EFI_GRUB_CFG = "EFI/debian/grub.cfg"  # signed disk GRUB's prefix is /EFI/debian
EFI_FILES = {EFI_SHIM: SHIM_SIGNED, EFI_GRUB: GRUB_SIGNED}


def iso_name(ctx: BuildContext) -> str:
    return "chaos.iso" if ctx.node is None else f"chaos-{ctx.node}.iso"


def iso_marker(ctx: BuildContext) -> str:
    """The file GRUB searches for to find the ISO 9660 tree of this very build."""
    return f"/boot/chaos-{ctx.base_key}.id"


def iso_marker_text(ctx: BuildContext) -> bytes:
    """The marker's content (signed GRUB measures the file its `search` opens: PCR 9)."""
    return f"{ctx.cluster.cluster.name}\n".encode()


def iso_nodes_cpio(ctx: BuildContext) -> bytes:
    """The ISO's node file: the bundle of every node's overlay, or --node's own overlay."""
    return ctx.bundle_cpio if ctx.node is None else ctx.node_cpios[ctx.node]


def iso_initrds() -> list[str]:
    return [f"/boot/{INITRD_NAME}", f"/boot/{NODES_NAME}"]


def isolinux_cfg(ctx: BuildContext) -> str:
    """The ISO's BIOS boot (templates/iso/isolinux.cfg.j2): the cluster, or the selftest."""
    return render_host(
        "iso/isolinux.cfg.j2",
        {
            "header": HEADER,
            "kernel": f"/boot/{KERNEL_NAME}",
            "initrds": iso_initrds(),
            "entries": (
                ("chaos", kernel_cmdline(ctx)),
                ("selftest", kernel_cmdline(ctx, selftest=True)),
            ),
        },
    )


def grub_cfg(ctx: BuildContext) -> str:
    """The ISO's GRUB config (templates/iso/grub.cfg.j2): hardened like the net one."""
    return render_host(
        "iso/grub.cfg.j2",
        {
            "header": HEADER,
            "marker": iso_marker(ctx),
            "kernel": f"/boot/{KERNEL_NAME}",
            "cmdline": kernel_cmdline(ctx),
            "initrds": iso_initrds(),
        },
    )


def make_efi_image(ctx: BuildContext, work: Path) -> Path:
    """A small FAT image: signed shim as BOOTX64.EFI, signed GRUB beside it, GRUB's config."""
    cfg = work / "grub.cfg"
    cfg.write_text(grub_cfg(ctx))
    image = work / "efiboot.img"
    size = sum(path.stat().st_size for path in EFI_FILES.values()) + cfg.stat().st_size
    kib = math.ceil(size / 1024) + 256
    run(["mkfs.vfat", "-C", "-n", "CHAOSEFI", "-i", "0c4a0500", "--invariant", image, str(kib)])
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    run(["mmd", "-i", image, "::/EFI", "::/EFI/BOOT", "::/EFI/debian"], env=env)
    for dest, source in [*EFI_FILES.items(), (EFI_GRUB_CFG, cfg)]:
        run(["mcopy", "-i", image, source, f"::/{dest}"], env=env)
    return image


def make_iso(ctx: BuildContext) -> bool:
    work = ctx.staging / ".iso-work"
    root = work / "root"
    (root / "boot").mkdir(parents=True)
    (root / "isolinux").mkdir()
    (root / iso_marker(ctx).lstrip("/")).write_bytes(iso_marker_text(ctx))
    shutil.copy2(ctx.base_dir / KERNEL_NAME, root / "boot" / KERNEL_NAME)
    shutil.copy2(ctx.base_dir / INITRD_NAME, root / "boot" / INITRD_NAME)
    (root / "boot" / NODES_NAME).write_bytes(iso_nodes_cpio(ctx))
    shutil.copy2(ISOLINUX, root / "isolinux" / ISOLINUX.name)
    shutil.copy2(LDLINUX, root / "isolinux" / LDLINUX.name)
    (root / "isolinux" / "isolinux.cfg").write_text(isolinux_cfg(ctx))
    shutil.copy2(make_efi_image(ctx, work), root / "boot" / "efiboot.img")
    # a CD's GRUB finds its prefix on the ISO 9660 tree: the same config there
    (root / EFI_GRUB_CFG).parent.mkdir(parents=True)
    shutil.copyfile(work / "grub.cfg", root / EFI_GRUB_CFG)
    env = dict(os.environ)
    if ctx.epoch > 0:
        env["SOURCE_DATE_EPOCH"] = str(ctx.epoch)
    run(
        [
            "xorriso",
            "-as",
            "mkisofs",
            "-o",
            ctx.staging / iso_name(ctx),
            "-V",
            VOLUME_ID,
            "-iso-level",
            "3",
            "-R",
            "-J",
            "-joliet-long",
            "-isohybrid-mbr",
            ISOHDPFX,
            "-c",
            "isolinux/boot.cat",
            "-b",
            "isolinux/isolinux.bin",
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "-eltorito-alt-boot",
            "-e",
            "boot/efiboot.img",
            "-no-emul-boot",
            "-isohybrid-gpt-basdat",
            root,
        ],
        env=env,
    )
    shutil.rmtree(work)
    return True
