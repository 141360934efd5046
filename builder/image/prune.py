"""Steps prune_modules and prune_files: only what a RAM-booted cluster node runs.

Kernel modules are kept by an allow-list per hardware profile plus what IPsec and
nftables need, closed over modules.dep. Storage drivers are never kept in the base: the
image must not see the local disks of the dual-boot lab machines it runs on. The always-on
head's disk drivers and ext4 (HEAD_STORAGE) are moved out of the base into a tree of their
own (BuildContext.head_tree, with the module indexes that list them), which only the head's
node overlay carries (builder/image/nodes.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from builder.errors import BuildError
from builder.image.context import BuildContext
from builder.model import Hardware
from builder.run import run

# Module directories (relative to lib/modules/<kver>/) that are kept whole.
KEEP_DIRS = (
    "kernel/net/netfilter/",
    "kernel/net/ipv4/netfilter/",
    "kernel/net/ipv6/netfilter/",
    "kernel/net/bridge/netfilter/",
    "kernel/net/xfrm/",
    "kernel/net/key/",
    "kernel/crypto/",
    "kernel/arch/x86/crypto/",
    "kernel/lib/crypto/",
)
# Modules kept by name on every profile.
KEEP_COMMON = (
    "esp4",
    "esp6",
    "esp4_offload",
    "esp6_offload",
    "ah4",
    "ah6",
    "xfrm4_tunnel",
    "xfrm6_tunnel",
    "tunnel4",
    "tunnel6",
    "ip_tunnel",
    "ip6_tunnel",
    "ip_vti",
    "ip6_vti",
    "xfrm_interface",
    "xfrm_user",
    "binfmt_misc",
    "efivarfs",
    "af_packet",
    "sch_netem",
    "sch_fq_codel",
    "dummy",
    "veth",
    "bridge",
    "tun",
    "8021q",
    "lz4_decompress",
    "zstd_decompress",
    "crc32c_generic",
    "crc32c-intel",
    "rng-core",
    "autofs4",
    # the always-on head's homes over NFSv4: nfsd on the head, the client on compute nodes
    # (network file systems: no local disk is reached through them)
    "nfsd",
    "nfsv4",
)
KEEP_HARDWARE = {
    Hardware.QEMU: (
        "virtio_net",
        "virtio_pci",
        "virtio_console",
        "virtio-rng",
        "virtio_rng",
        "virtio_balloon",
        "e1000",
        "e1000e",
    ),
    Hardware.LAB: (
        "e1000",
        "e1000e",
        "igb",
        "igc",
        "ixgbe",
        "r8169",
        "tg3",
        "bnx2",
        "bnx2x",
        "alx",
        "atl1c",
        "atl1e",
        "sky2",
        "skge",
        "forcedeth",
        "8139too",
        "8139cp",
        "r8152",
        "ax88179_178a",
        "cdc_ether",
        "usbnet",
        "xhci_pci",
        "ehci_pci",
        "ohci_pci",
        "uhci_hcd",
        "usbhid",
        "hid_generic",
        "virtio_net",
        "virtio_pci",
        "virtio_console",
        "virtio_rng",
    ),
}
# Never shipped (and blacklisted in overlays/common/etc/modprobe.d): local storage.
STORAGE = (
    "ahci",
    "libahci",
    "libata",
    "ata_piix",
    "ata_generic",
    "pata_acpi",
    "sd_mod",
    "sr_mod",
    "cdrom",
    "nvme",
    "nvme_core",
    "virtio_blk",
    "virtio_scsi",
    "usb_storage",
    "uas",
    "scsi_mod",
    "mmc_block",
    "sdhci",
    "sdhci_pci",
    "rtsx_pci_sdmmc",
    "loop",
    "nbd",
    "megaraid_sas",
    "mpt3sas",
    "hpsa",
    "firewire_sbp2",
    "isofs",
    "ext4",
    "vfat",
    "ntfs3",
    "btrfs",
    "xfs",
    "dm_mod",
    "md_mod",
    "raid1",
    "raid0",
)
STORAGE_DIRS = (
    "kernel/drivers/ata/",
    "kernel/drivers/nvme/",
    "kernel/drivers/scsi/",
    "kernel/drivers/usb/storage/",
    "kernel/drivers/mmc/",
    "kernel/drivers/md/",
    "kernel/drivers/block/",
    "kernel/drivers/cdrom/",
    "kernel/drivers/target/",
    "kernel/drivers/memstick/",
    *(
        f"kernel/fs/{fs}/"
        for fs in (
            "ext4",
            "jbd2",
            "btrfs",
            "xfs",
            "ntfs3",
            "fat",
            "isofs",
            "udf",
            "exfat",
            "f2fs",
            "jfs",
            "reiserfs",
            "hfs",
            "hfsplus",
            "nilfs2",
            "squashfs",
            "erofs",
            "ocfs2",
            "gfs2",
            "ceph",
            "cifs",
            "smb",
        )
    ),
)
# Only for the always-on head (issue 21), whose state disk is a small server's SATA or NVMe
# disk or a VM's virtio disk, with ext4 on it (jbd2, mbcache, libahci, nvme-core and the SCSI
# core come with them through modules.dep).
HEAD_STORAGE = ("virtio_blk", "ahci", "sd_mod", "nvme", "ext4")


def module_name(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name.replace("-", "_")


def is_storage(path: str) -> bool:
    return module_name(path) in {module_name(s) for s in STORAGE} or path.startswith(STORAGE_DIRS)


def read_deps(moddir: Path) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    return deps


def closure(deps: dict[str, list[str]], wanted: list[str]) -> set[str]:
    """The module files wanted and everything they depend on."""
    found: set[str] = set()
    while wanted:
        mod = wanted.pop()
        if mod not in found:
            found.add(mod)
            wanted.extend(deps.get(mod, ()))
    return found


def select_modules(deps: dict[str, list[str]], hardware: Hardware) -> set[str]:
    """The module files to keep: the allow-list closed over dependencies, minus storage."""
    names = {module_name(n) for n in KEEP_COMMON + KEEP_HARDWARE[hardware]}
    keep = closure(deps, [m for m in deps if m.startswith(KEEP_DIRS) or module_name(m) in names])
    storage = sorted(m for m in keep if is_storage(m))
    if storage:
        raise BuildError(f"the module allow-list pulls in storage drivers: {', '.join(storage)}")
    return keep


def select_head_modules(deps: dict[str, list[str]], keep: set[str]) -> set[str]:
    """The head's storage module files: HEAD_STORAGE closed over dependencies, minus what
    every node keeps."""
    names = {module_name(n) for n in HEAD_STORAGE}
    wanted = [m for m in deps if module_name(m) in names]
    if len(wanted) != len(names):
        found = {module_name(m) for m in wanted}
        raise BuildError(
            f"the kernel has no module {', '.join(sorted(names - found))} for "
            "the always-on head's state disk"
        )
    return closure(deps, wanted) - keep


def kernel_moddir(tree: Path) -> Path:
    kernels = sorted((tree / "usr/lib/modules").iterdir())
    if len(kernels) != 1:
        raise BuildError(f"expected one kernel in the image, found {[k.name for k in kernels]}")
    return kernels[0]


def prune_modules(ctx: BuildContext) -> bool:
    moddir = kernel_moddir(ctx.tree)
    deps = read_deps(moddir)
    keep = select_modules(deps, ctx.cluster.image.hardware)
    head = select_head_modules(deps, keep)
    builtin = (moddir / "modules.builtin").read_text().split()
    if any(is_storage(m) for m in builtin):
        raise BuildError(f"kernel {moddir.name} has storage drivers built in")
    for ko in (moddir / "kernel").rglob("*.ko*"):
        if ko.relative_to(moddir).as_posix() not in keep | head:
            ko.unlink()
    # the head's indexes list its storage modules too; the base's (depmod again) do not
    depmod(ctx, moddir)
    move_head_modules(moddir, ctx.head_tree / moddir.relative_to(ctx.tree), head)
    remove_empty_dirs(moddir / "kernel")
    depmod(ctx, moddir)
    return True


def depmod(ctx: BuildContext, moddir: Path) -> None:
    # the image's own depmod (kmod), so the host needs no kmod
    run(["chroot", ctx.tree, "/usr/sbin/depmod", "-a", moddir.name])


def move_head_modules(moddir: Path, head_moddir: Path, head: set[str]) -> None:
    """The head's storage modules and the indexes that know them, out of the base tree."""
    shutil.rmtree(head_moddir, ignore_errors=True)
    head_moddir.mkdir(parents=True)
    for index in moddir.glob("modules.*"):
        shutil.copy2(index, head_moddir / index.name)
    for rel in sorted(head):
        target = head_moddir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        (moddir / rel).rename(target)


def remove_empty_dirs(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


# Paths (relative to the root) that a running node never reads.
PRUNE_PATHS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bash-completion",
    "usr/share/zsh",
    "usr/share/fish",
    "usr/share/gcc",
    "usr/share/gdb",
    "usr/share/bug",
    "usr/share/menu",
    "usr/share/pixmaps",
    "usr/share/icons",
    "usr/lib/udev/hwdb.d",
    "usr/lib/udev/hwdb.bin",
    "etc/udev/hwdb.bin",
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/lib/x86_64-linux-gnu/perl-base",
    "usr/bin/perl",
    "usr/share/perl5",
    "usr/lib/x86_64-linux-gnu/perl5",
    "usr/lib/python3.11/test",
    "usr/lib/python3.11/idlelib",
    "usr/lib/python3.11/tkinter",
    "usr/lib/python3.11/turtledemo",
    "usr/lib/python3.11/ensurepip",
    "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/pydoc_data",
    "usr/lib/python3.11/config-3.11-x86_64-linux-gnu",
    "usr/lib/systemd/catalog",
    "usr/lib/systemd/boot",
    "usr/share/systemd/kbd-model-map",
    "var/cache/apt",
    "var/lib/apt",
    "var/cache/debconf",
    "var/log",
    "etc/apt",
    "var/cache/ldconfig/aux-cache",
    "boot",
    "usr/lib/firmware",
)


# Secrets that package scripts make at install time, the same in every image built from this
# rootfs: munge's postinst runs `mungekey -c`. A node gets the cluster's munge key only from
# enrollment, into tmpfs (chaosnode.paths.MUNGE_KEY); the image audit would refuse this one.
# openssh-server's postinst makes host keys: the always-on head makes its own on its state
# disk (chaosnode.statedisk), and no other node runs sshd.
PACKAGE_SECRETS = (
    "etc/munge/munge.key",
    *(
        f"etc/ssh/ssh_host_{kind}_key{ext}"
        for kind in ("rsa", "ecdsa", "ed25519")
        for ext in ("", ".pub")
    ),
)


# Slurm plugins and commands for what a chaos cluster does not have: slurmrestd's OpenAPI and
# REST auth, Cray/KNL hardware, burst buffers, energy/Lustre accounting, and the accounting
# database's clients (no slurmdbd).
PRUNE_GLOBS = tuple(
    f"usr/lib/x86_64-linux-gnu/slurm-wlm/{p}"
    for p in (
        "openapi_*.so",
        "rest_auth_*.so",
        "burst_buffer_*.so",
        "*cray*.so",
        "node_features_knl_*.so",
        "acct_gather_energy_[gipr]*.so",
        "acct_gather_filesystem_lustre.so",
    )
) + tuple(f"usr/bin/{c}" for c in ("sacctmgr", "sacct", "sreport"))


def prune_files(ctx: BuildContext) -> bool:
    root = ctx.tree
    for rel in PACKAGE_SECRETS:
        (root / rel).unlink(missing_ok=True)
    for rel in PRUNE_PATHS:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for pattern in PRUNE_GLOBS:
        for path in root.glob(pattern):
            path.unlink()
    for cache in sorted(root.rglob("__pycache__")):
        shutil.rmtree(cache)
    for info in (root / "var/lib/dpkg/info").glob("*.md5sums"):
        info.unlink()
    for old in (root / "var/lib/dpkg").glob("*-old"):
        old.unlink()
    (root / "var/log").mkdir(exist_ok=True)
    return True
