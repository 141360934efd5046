"""Step make_iso: one hybrid ISO (BIOS isolinux + UEFI GRUB), bootable from CD or USB stick.

The ISO holds the kernel, the base initrd and the node bundle (every node's overlay; the
machine picks its own by MAC) or, with --node, that one node's overlay.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from builder.image.base import INITRD_NAME, KERNEL_NAME
from builder.image.context import BuildContext
from builder.image.pxe import HEADER, kernel_cmdline
from builder.run import run

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
ISOHDPFX = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
GRUB_MODULES = (
    "part_gpt",
    "part_msdos",
    "iso9660",
    "fat",
    "search",
    "search_fs_file",
    "linux",
    "normal",
    "configfile",
    "echo",
    "test",
    "all_video",
    "efi_gop",
)
VOLUME_ID = "CHAOS"
NODES_NAME = "nodes.cpio"


def iso_name(ctx: BuildContext) -> str:
    return "chaos.iso" if ctx.node is None else f"chaos-{ctx.node}.iso"


def isolinux_cfg(ctx: BuildContext) -> str:
    initrds = f"/boot/{INITRD_NAME},/boot/{NODES_NAME}"
    return (
        f"# {HEADER}\nSERIAL 0 115200\nPROMPT 0\nDEFAULT chaos\n"
        f"LABEL chaos\n  LINUX /boot/{KERNEL_NAME}\n  INITRD {initrds}\n"
        f"  APPEND {kernel_cmdline(ctx)}\n"
        f"LABEL selftest\n  LINUX /boot/{KERNEL_NAME}\n  INITRD {initrds}\n"
        f"  APPEND {kernel_cmdline(ctx, selftest=True)}\n"
    )


def grub_cfg(ctx: BuildContext, marker: str) -> str:
    initrds = f"/boot/{INITRD_NAME} /boot/{NODES_NAME}"
    return (
        f"# {HEADER}\nsearch --no-floppy --file --set=root /boot/{marker}\n"
        "set timeout=1\nset default=0\n"
        f'menuentry "chaos" {{\n  linux /boot/{KERNEL_NAME} {kernel_cmdline(ctx)}\n'
        f"  initrd {initrds}\n}}\n"
        'menuentry "chaos self-test (power off after the report)" {\n'
        f"  linux /boot/{KERNEL_NAME} {kernel_cmdline(ctx, selftest=True)}\n"
        f"  initrd {initrds}\n}}\n"
    )


def make_efi_image(ctx: BuildContext, work: Path, marker: str) -> Path:
    """grub-mkstandalone's BOOTX64.EFI (only the modules it needs) in a small FAT image."""
    cfg = work / "grub.cfg"
    cfg.write_text(grub_cfg(ctx, marker))
    efi = work / "BOOTX64.EFI"
    modules = " ".join(GRUB_MODULES)
    run(
        [
            "grub-mkstandalone",
            "--format=x86_64-efi",
            f"--output={efi}",
            f"--modules={modules}",
            f"--install-modules={modules}",
            "--locales=",
            "--fonts=",
            "--themes=",
            f"boot/grub/grub.cfg={cfg}",
        ]
    )
    image = work / "efiboot.img"
    kib = math.ceil(efi.stat().st_size / 1024) + 256
    run(["mkfs.vfat", "-C", "-n", "CHAOSEFI", "-i", "0c4a0500", "--invariant", image, str(kib)])
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    run(["mmd", "-i", image, "::/EFI", "::/EFI/BOOT"], env=env)
    run(["mcopy", "-i", image, efi, "::/EFI/BOOT/BOOTX64.EFI"], env=env)
    return image


def make_iso(ctx: BuildContext) -> bool:
    work = ctx.staging / ".iso-work"
    root = work / "root"
    (root / "boot").mkdir(parents=True)
    (root / "isolinux").mkdir()
    marker = f"chaos-{ctx.base_key}.id"
    (root / "boot" / marker).write_text(f"{ctx.cluster.cluster.name}\n")
    shutil.copy2(ctx.base_dir / KERNEL_NAME, root / "boot" / KERNEL_NAME)
    shutil.copy2(ctx.base_dir / INITRD_NAME, root / "boot" / INITRD_NAME)
    nodes = ctx.bundle_cpio if ctx.node is None else ctx.node_cpios[ctx.node]
    (root / "boot" / NODES_NAME).write_bytes(nodes)
    shutil.copy2(ISOLINUX, root / "isolinux" / ISOLINUX.name)
    shutil.copy2(LDLINUX, root / "isolinux" / LDLINUX.name)
    (root / "isolinux" / "isolinux.cfg").write_text(isolinux_cfg(ctx))
    shutil.copy2(make_efi_image(ctx, work, marker), root / "boot" / "efiboot.img")
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
