"""The Secure Boot PXE stage (image.pxe_stage, issue 20 item 4; in progress, default off).

Signed GRUB fetches only over TFTP, and TFTP is far below line rate when a lab boots at once.
The stage is a small initramfs GRUB loads instead of the whole root: busybox-static, the NIC
modules of the image's own kernel and an /init (templates/stage/init.j2) that takes an address
by DHCP, fetches the root over HTTP (`chaos.root=` on the kernel command line), checks it
against the sha256 baked in here and only then unpacks it into a tmpfs, copies the node's
overlay (its stage cpio, under OVERLAY_PREFIX) over it and switches into the root's systemd.
GRUB measures the stage into PCR 9, so the stage's own digest pins the root it accepts.

Everything here is pure up to stage_archive(): the caller reads busybox and the modules.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.hostconf import render_view
from builder.image.cpio import Entry, archive, pad4, tree_entries
from builder.image.prune import module_name
from builder.image.pxe import HEADER
from builder.run import run

STAGE_NAME = "stage.img"
ROOT_ARG = "chaos.root"  # the kernel argument naming the root's HTTP URL
OVERLAY_PREFIX = "chaos-overlay"  # where a node's stage cpio holds its files
BUSYBOX = Path("/bin/busybox")  # busybox-static (the Makefile's apt list)
UDHCPC_SCRIPT = "etc/udhcpc.script"
# The NICs the stage can fetch the root through: QEMU's and the common desktop ones. A name
# the kernel builds in (modules.builtin) or lacks is skipped; dependencies come from modules.dep.
NIC_MODULES = ("virtio_pci", "virtio_net", "e1000e", "igb", "r8169", "realtek")
# The root is unpacked from a gzip variant busybox can read (it has no zstd). Measured on the
# 24a1ccde base: zstd 44.4 MB, gzip -6 61.8 MB, plain 175.9 MB; busybox gunzip 1.9 s on the
# build host (zstd -d 0.8 s), but carrying zstd costs 3.7 MB of binary and libraries, which
# would put the stage near 8 MB.
UNPACK = "gunzip -c"
STAGE_COMPRESSOR = ("zstd", "-19", "-q", "--no-progress", "-c")  # the kernel unpacks it
TMPFS_SIZE = "90%"


@dataclass(frozen=True)
class StageInit:
    """templates/stage/init.j2: the stage's /init."""

    header: str
    modules: tuple[str, ...]  # file names under /lib/modules, in insmod order
    root_arg: str
    root_sha256: str
    tmpfs_size: str
    unpack: str
    overlay_prefix: str
    next_init: str


@dataclass(frozen=True)
class UdhcpcScript:
    """templates/stage/udhcpc.script.j2: udhcpc's script (address and default route)."""

    header: str


def insmod_order(
    deps: dict[str, list[str]], builtin: set[str], wanted: tuple[str, ...]
) -> list[str]:
    """Module paths (relative to lib/modules/<kver>/) in an order insmod can load them:
    each module after its dependencies (modules.dep lists a module's deps so that the last
    is loaded first), built-in and missing names skipped."""
    by_name = {module_name(path): path for path in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order or path in builtin:
            return
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
    return order


def read_builtin(moddir: Path) -> set[str]:
    path = moddir / "modules.builtin"
    return set(path.read_text().split()) if path.exists() else set()


def stage_init(modules: list[str], root_sha256: str) -> str:
    if len(root_sha256) != 64:
        raise BuildError(f"the stage needs the root's sha256, got {root_sha256!r}")
    return render_view(
        "stage/init.j2",
        StageInit(
            header=HEADER,
            modules=tuple(Path(m).name for m in modules),
            root_arg=ROOT_ARG,
            root_sha256=root_sha256,
            tmpfs_size=TMPFS_SIZE,
            unpack=UNPACK,
            overlay_prefix=OVERLAY_PREFIX,
            next_init="/init",
        ),
    )


UDHCPC = render_view("stage/udhcpc.script.j2", UdhcpcScript(HEADER))


def stage_archive(
    busybox: bytes, modules: dict[str, bytes], root_sha256: str, order: list[str], epoch: int
) -> bytes:
    """stage.img (uncompressed newc; GRUB measures these bytes): /init, busybox, the
    udhcpc script and the NIC modules by file name."""
    exe = stat.S_IFREG | 0o755
    entries: dict[str, Entry] = {
        "init": (exe, stage_init(order, root_sha256).encode(), epoch),
        "bin/busybox": (exe, busybox, epoch),
        UDHCPC_SCRIPT: (exe, UDHCPC.encode(), epoch),
        "newroot": (stat.S_IFDIR | 0o755, b"", epoch),
    }
    for path in order:
        entries[f"lib/modules/{Path(path).name}"] = (stat.S_IFREG | 0o644, modules[path], epoch)
    return archive(entries, epoch)


def compress_stage(packed: bytes) -> bytes:
    """stage.img as GRUB loads it: zstd (4.4 MB plain, 1.4 MB compressed, measured)."""
    compressed = run(STAGE_COMPRESSOR, input=packed, quiet=True).stdout
    # zero-padded to 4 bytes: the kernel finds the node's cpio behind it only when aligned
    # (GRUB aligns each initrd; a plain concatenation for QEMU's -initrd must too)
    return compressed + pad4(len(compressed))


def node_stage_cpio(overlay: Path, epoch: int) -> bytes:
    """A node's stage cpio: its overlay tree under OVERLAY_PREFIX, which the stage copies
    over the unpacked root (the kernel would otherwise unpack it into the stage itself)."""
    return archive(tree_entries(overlay, epoch, OVERLAY_PREFIX), epoch)
