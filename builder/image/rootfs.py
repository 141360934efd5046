"""Step install_rootfs: a Debian root filesystem from the host's own apt mirror (mmdebstrap)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from builder.errors import BuildError
from builder.image.context import BuildContext
from builder.run import run

DPKG_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/locale/*",
    "/usr/share/info/*",
    "/usr/share/lintian/*",
    "/usr/share/linda/*",
)
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")
STAMP = ".chaos-rootfs-complete"


def install_rootfs(ctx: BuildContext) -> bool:
    """Bootstrap the rootfs into the cache; False (skipped) when this package set is there."""
    target = ctx.rootfs_dir
    if (target / STAMP).exists():
        return False
    if ctx.sources is None:
        raise BuildError(
            "no apt sources on this host (/etc/apt/sources.list.d/debian.sources "
            "or /etc/apt/sources.list): the image is built from the host's mirror"
        )
    archives = ctx.apt_cache / "var" / "cache" / "apt" / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    if any(c.isspace() for c in str(archives)):
        raise BuildError(f"{archives}: the cache path must not contain spaces (mmdebstrap hooks)")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    argv: list[str | Path] = [
        "mmdebstrap",
        "--variant=essential",
        "--mode=root",
        f"--hook-dir={MERGED_USR_HOOK}",
        "--include=" + ",".join(ctx.packages),
        *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
        # keep downloaded .debs in the cache between builds
        "--skip=essential/unlink",
        f"--setup-hook=copy-in {ctx.apt_cache / 'var'} /",
        f"--customize-hook=sync-out /var/cache/apt/archives {archives}",
        ctx.cluster.image.suite,
        partial,
        ctx.sources,
    ]
    run(argv, env={**os.environ, "INITRD": "No"})
    (partial / STAMP).touch()
    partial.rename(target)
    return True
