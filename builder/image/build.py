"""The image recipe: a flat list of steps, each timed, each skipping itself when up to date.

Entry point for `chaos-build build`: build_image(cluster, nodes_dir, out_dir, cache_dir, node).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from builder.errors import BuildError
from builder.image.base import (
    COMPRESSORS,
    compile_python,
    copy_rootfs,
    install_common_overlay,
    pack_initrd,
    publish_base,
)
from builder.image.context import BuildContext
from builder.image.iso import make_iso
from builder.image.nodes import pack_node_overlays
from builder.image.prune import prune_files, prune_modules
from builder.image.pxe import make_pxe
from builder.image.rootfs import install_rootfs
from builder.measured.step import HOST_FILES as MEASURED_HOST_FILES
from builder.measured.step import write_measured_reference
from builder.model import Cluster, Compression, ImageFormat
from builder.run import check_tools

log = logging.getLogger("chaos.image")
Step = Callable[[BuildContext], bool]


def base_step(step: Step) -> Step:
    """A step of the node-independent base: skipped when the base for this key exists."""

    @functools.wraps(step)
    def wrapper(ctx: BuildContext) -> bool:
        if ctx.base_dir.exists():
            return False
        return step(ctx)

    return wrapper


def host_tools(ctx: BuildContext) -> dict[str, str]:
    image = ctx.cluster.image
    tools = {
        "mmdebstrap": "bootstraps the Debian root filesystem from the host's apt mirror",
        "cpio": "packs the root filesystem into the base initramfs",
        "chroot": "runs the image's depmod after pruning modules",
        "cp": "copies the cached rootfs into the work tree",
    }
    compressor = COMPRESSORS.get(image.compression)
    if compressor is not None:
        tools[compressor[0]] = f"compresses the initramfs ({image.compression.value})"
    if ImageFormat.ISO in image.formats:
        tools |= {
            "xorriso": "writes the hybrid ISO",
            "zstd": "compresses the ISO's bundle of every node overlay (~200 bytes a node)",
            "mkfs.vfat": "makes the ISO's EFI system partition image (dosfstools)",
            "mcopy": "fills the EFI image (mtools)",
            "/usr/lib/ISOLINUX/isolinux.bin": "BIOS boot loader of the ISO (isolinux)",
            "/usr/lib/syslinux/modules/bios/ldlinux.c32": "isolinux/pxelinux core module "
            "(syslinux-common)",
        }
    if ImageFormat.PXE in image.formats:
        tools |= {
            "/usr/lib/ipxe/undionly.kpxe": "iPXE binaries for the PXE tree (ipxe)",
            "/usr/lib/PXELINUX/pxelinux.0": "BIOS PXE without iPXE (pxelinux)",
            "grub-mkstandalone": "makes the UEFI PXE boot loader (grub-efi-amd64-bin)",
            "/usr/lib/grub/x86_64-efi/efinet.mod": "GRUB's UEFI network modules "
            "(grub-efi-amd64-bin)",
        }
    return tools | MEASURED_HOST_FILES


def check_host_tools(ctx: BuildContext) -> bool:
    if ctx.cluster.image.compression is Compression.LZ4:
        # measured: the kernel's legacy-lz4 reader runs into the node cpio behind it
        # ("Decoding failed") and the node boots without its identity
        raise BuildError(
            "image.compression: lz4 cannot carry a node overlay behind the base "
            "initrd (the node boots without its identity); use zstd or xz"
        )
    check_tools(host_tools(ctx))
    return True


def prepare_staging(ctx: BuildContext) -> bool:
    shutil.rmtree(ctx.staging, ignore_errors=True)
    ctx.staging.mkdir(parents=True)
    return True


def summary(ctx: BuildContext) -> dict[str, object]:
    artifacts = {
        p.relative_to(ctx.staging).as_posix(): p.stat().st_size
        for p in sorted(ctx.staging.rglob("*"))
        if p.is_file()
    }
    return {
        "nodes": len(ctx.nodes),
        "base_key": ctx.base_key,
        "kernel": (ctx.base_dir / "kernel-version").read_text().strip(),
        "compression": ctx.cluster.image.compression.value,
        "hardware": ctx.cluster.image.hardware.value,
        "root_bytes": int((ctx.base_dir / "tree-bytes").read_text()),
        "artifacts": artifacts,
        "steps": [
            {"name": t.name, "seconds": round(t.seconds, 2), "skipped": t.skipped}
            for t in ctx.timings
        ],
    }


def write_summary(ctx: BuildContext) -> bool:
    (ctx.staging / "summary.json").write_text(json.dumps(summary(ctx), indent=2) + "\n")
    return True


def publish_output(ctx: BuildContext) -> bool:
    """Swap the finished staging dir into out/; a failed build never gets here."""
    old = ctx.out_dir.with_name(f".{ctx.out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if ctx.out_dir.exists():
        ctx.out_dir.rename(old)
    ctx.staging.rename(ctx.out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return True


def recipe(ctx: BuildContext) -> list[Step]:
    formats = ctx.cluster.image.formats
    return [
        check_host_tools,
        install_rootfs,
        base_step(copy_rootfs),
        base_step(install_common_overlay),
        base_step(prune_modules),
        base_step(prune_files),
        base_step(compile_python),
        base_step(pack_initrd),
        base_step(publish_base),
        prepare_staging,
        pack_node_overlays,
        *([make_pxe] if ImageFormat.PXE in formats else []),
        *([make_iso] if ImageFormat.ISO in formats else []),
        write_measured_reference,
        write_summary,
        publish_output,
    ]


LOCK_FILE = ".lock"  # in the cache directory


@contextlib.contextmanager
def cache_lock(cache_dir: Path) -> Iterator[None]:
    """One build at a time per cache: a second build (another admin's, a test tier beside
    another) waits, and says so, instead of bootstrapping over the first one's half-made
    rootfs. flock: released by the kernel when the holder exits, however it exits."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / LOCK_FILE).open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another build that uses the cache %s", cache_dir)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def run_steps(ctx: BuildContext, steps: list[Step]) -> None:
    from builder.image.context import StepTime

    with contextlib.ExitStack() as held:
        for number, step in enumerate(steps, start=1):
            if step is install_rootfs:  # the first step that writes the cache: held from here
                held.enter_context(cache_lock(ctx.cache_dir))
            start = time.monotonic()
            done = step(ctx)
            seconds = time.monotonic() - start
            ctx.timings.append(StepTime(step.__name__, seconds, skipped=not done))
            log.info(
                "[%2d/%d] %-22s %7.1f s%s",
                number,
                len(steps),
                step.__name__,
                seconds,
                "" if done else "  (up to date)",
            )


def build_image(
    cluster: Cluster,
    nodes_dir: Path,
    out_dir: Path,
    cache_dir: Path,
    node: str | None = None,
    repo_dir: Path | None = None,
) -> dict[str, object]:
    """Build out/chaos.iso and out/pxe/ from the cluster model and rendered node overlays.

    repo_dir holds overlays/ and the node packages (default: this install's own).
    Returns the build summary (also written to out/summary.json).
    """
    ctx = BuildContext(
        cluster=cluster,
        nodes_dir=nodes_dir,
        out_dir=out_dir,
        cache_dir=cache_dir,
        node=node,
        repo_dir=repo_dir,
    )
    run_steps(ctx, recipe(ctx))
    # the published summary also times the last steps (summary writing and publishing)
    ctx.staging = out_dir
    data = summary(ctx)
    (out_dir / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    return data
