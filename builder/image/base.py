"""Steps copy_rootfs, install_common_overlay and pack_initrd: the node-independent base.

Every feature's static files (overlays/<feature>/ without its templates) go into the base;
the units and links come from the features (builder/features/).

The base is one kernel plus one initramfs holding the whole root (`/init` is systemd), so
nothing on the boot medium or a local disk is needed after the bootloader has read it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from builder import features
from builder.errors import BuildError
from builder.features import FEATURES, TEMPLATE_SUFFIX
from builder.image.context import BuildContext, vici_dir
from builder.image.packages import NODE_PACKAGES
from builder.image.prune import kernel_moddir
from builder.model import Compression
from builder.run import run

log = logging.getLogger("chaos.image")

SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"
# Units the image starts besides those the packages enable themselves (each feature's).
ENABLE_UNITS = features.enabled_units()
COMPRESSORS: dict[Compression, list[str]] = {
    Compression.ZSTD: ["zstd", "-19", "-T0", "-q", "--no-progress"],
    # the kernel's XZ decoder wants CRC32 checks
    Compression.XZ: ["xz", "--check=crc32", "-9", "-T1", "-q"],
    # the kernel only reads the legacy lz4 frame format
    Compression.LZ4: ["lz4", "-l", "-9", "-q"],
}
# Units the packages enable that must wait for what only a booted node has (the features
# that say so, with a preset in their folder against systemd's first-boot preset).
DISABLE_UNITS = features.disabled_units()
# No shell for whoever sits at a lab PC: root stays locked (the rootfs has `root:*`), and the
# units that would open a root shell without a password on a failed boot or a debug switch
# are masked (SysRq: overlays/common/etc/sysctl.d/90-chaos-hardening.conf).
MASK_UNITS = ("emergency.service", "rescue.service", "debug-shell.service")
INITRD_NAME = "initrd.img"
PRECOMPILE = Path(__file__).with_name("precompile.py")
KERNEL_NAME = "vmlinuz"


def copy_rootfs(ctx: BuildContext) -> bool:
    """A fresh work copy of the cached rootfs; the cached one is never modified."""
    shutil.rmtree(ctx.base_work, ignore_errors=True)
    ctx.base_work.mkdir(parents=True)
    run(["cp", "-a", "--reflink=auto", ctx.rootfs_dir, ctx.tree])
    (ctx.tree / ".chaos-rootfs-complete").unlink()
    moddir = kernel_moddir(ctx.tree)
    ctx.kernel_version = moddir.name
    shutil.copy2(ctx.tree / "boot" / f"vmlinuz-{moddir.name}", ctx.base_work / KERNEL_NAME)
    return True


def holds_static_files(folder: Path) -> bool:
    return any(
        not p.name.endswith(TEMPLATE_SUFFIX) and (p.is_symlink() or not p.is_dir())
        for p in folder.rglob("*")
    )


def templates_only(directory: str, names: list[str]) -> set[str]:
    """copytree's ignore: the templates (each node's, rendered) and folders holding nothing
    else, so the base gets no empty directories from them."""
    here = Path(directory)
    return {
        name
        for name in names
        if name.endswith(TEMPLATE_SUFFIX)
        or (
            (here / name).is_dir()
            and not (here / name).is_symlink()
            and not holds_static_files(here / name)
        )
    }


def base_files_of(folder: Path, own_root: str) -> Callable[[str, list[str]], set[str]]:
    """copytree's ignore for a feature's folder: its templates, and its own node's subfolder."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = templates_only(directory, names)
        if own_root and Path(directory) == folder:
            skipped.add(own_root)
        return skipped

    return ignore


def install_common_overlay(ctx: BuildContext) -> bool:
    """Each feature's static files, the node packages and vici into the tree; enable units;
    /init."""
    root = ctx.tree
    for feature in FEATURES:
        folder = ctx.overlays / feature.name
        if not folder.is_dir():
            raise BuildError(f"{folder}: missing; the {feature.name} feature's files")
        shutil.copytree(
            folder,
            root,
            symlinks=True,
            dirs_exist_ok=True,
            ignore=base_files_of(folder, feature.own_root),
        )
    site = root / SITE_PACKAGES
    site.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in (*ctx.node_packages, vici_dir()):
        if package.is_dir():
            shutil.copytree(package, site / package.name, ignore=ignore, dirs_exist_ok=True)
    for unit in ENABLE_UNITS:
        enable_unit(root, unit)
    for unit in DISABLE_UNITS:
        disable_unit(root, unit)
    for unit in MASK_UNITS:
        mask_unit(root, unit)
    for link, target in features.links(ctx.cluster):
        (root / link).unlink(missing_ok=True)
        (root / link).symlink_to(target)
    init = root / "init"
    init.unlink(missing_ok=True)
    init.symlink_to("usr/lib/systemd/systemd")
    # a RAM-only node gets a fresh machine id every boot
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("chaos\n")
    return True


def compile_python(ctx: BuildContext) -> bool:
    """Bytecode for what the node's Python programs import at boot (prune_files removed all
    of Debian's): under TCG, compiling asyncio/ssl/json on every start cost seconds."""
    root = ctx.tree
    shutil.copy2(PRECOMPILE, root / "tmp" / PRECOMPILE.name)
    try:
        result = run(
            [
                "chroot",
                root,
                "/usr/bin/python3",
                "-I",
                f"/tmp/{PRECOMPILE.name}",
                *[f"--package={name}" for name in (*NODE_PACKAGES, "vici")],
            ]
        )
    finally:
        (root / "tmp" / PRECOMPILE.name).unlink()
    log.info("bytecode for %s modules", result.stdout.decode().strip())
    return True


def enable_unit(root: Path, unit: str) -> None:
    """`systemctl enable` without systemd: link the unit into its WantedBy= targets."""
    for unit_dir in ("etc/systemd/system", "usr/lib/systemd/system"):
        path = root / unit_dir / unit
        if path.exists():
            break
    else:
        return  # not installed (e.g. tyd before the tyd package lands): the selftest says so
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("WantedBy", "RequiredBy"):
            suffix = ".wants" if key.strip() == "WantedBy" else ".requires"
            for target in value.split():
                link_dir = root / "etc/systemd/system" / (target + suffix)
                link_dir.mkdir(parents=True, exist_ok=True)
                link = link_dir / unit
                link.unlink(missing_ok=True)
                link.symlink_to(f"/{unit_dir}/{unit}")
        if key.strip() == "Also":
            # sockets yes; not systemd-networkd-wait-online, which can hold boot for minutes
            for also in value.split():
                if also.endswith(".socket"):
                    enable_unit(root, also)


def disable_unit(root: Path, unit: str) -> None:
    """`systemctl disable` without systemd: drop the unit's links from every target (they
    point into the image, so on the build host they dangle: no glob, which skips those)."""
    system = root / "etc/systemd/system"
    for wants in system.iterdir() if system.is_dir() else ():
        link = wants / unit
        if wants.name.endswith((".wants", ".requires")) and link.is_symlink():
            link.unlink()


def mask_unit(root: Path, unit: str) -> None:
    """`systemctl mask` without systemd: /etc/systemd/system/UNIT -> /dev/null."""
    link = root / "etc/systemd/system" / unit
    link.unlink(missing_ok=True)
    link.symlink_to("/dev/null")


def clamp_mtimes(root: Path, epoch: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if st.st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)


def sorted_paths(root: Path) -> list[str]:
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            paths.append(name if rel == "." else f"{rel}/{name}")
    return sorted(paths)


def pack_initrd(ctx: BuildContext) -> bool:
    """The whole tree as one sorted, root-owned newc cpio, compressed, padded to 4 bytes."""
    clamp_mtimes(ctx.tree, ctx.epoch)
    cpio = ctx.base_work / "initrd.cpio"
    listing = "\0".join(sorted_paths(ctx.tree)).encode() + b"\0"
    with cpio.open("wb") as out:
        run(
            [
                "cpio",
                "--create",
                "--null",
                "--format=newc",
                "--owner=0:0",
                "--reproducible",
                "--quiet",
            ],
            cwd=ctx.tree,
            stdout=out.fileno(),
            input=listing,
        )
    initrd = ctx.base_work / INITRD_NAME
    compressor = COMPRESSORS.get(ctx.cluster.image.compression)
    if compressor is None:
        cpio.rename(initrd)
    else:
        with initrd.open("wb") as out:
            run([*compressor, "-c", cpio], stdout=out.fileno())
        cpio.unlink()
    with initrd.open("ab") as f:
        f.write(b"\0" * (-initrd.stat().st_size % 4))
    return True


def publish_base(ctx: BuildContext) -> bool:
    """Keep kernel and initrd under the base key; drop the work tree."""
    final = ctx.base_dir
    staged = ctx.base_work / "publish"
    staged.mkdir()
    for name in (KERNEL_NAME, INITRD_NAME):
        (ctx.base_work / name).rename(staged / name)
    ctx.head_tree.rename(staged / ctx.head_tree.name)
    (staged / "kernel-version").write_text(ctx.kernel_version + "\n")
    (staged / "tree-bytes").write_text(f"{tree_bytes(ctx.tree)}\n")
    staged.rename(final)
    shutil.rmtree(ctx.base_work)
    return True


def tree_bytes(root: Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(root) for f in files)
