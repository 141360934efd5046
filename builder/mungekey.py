"""The cluster's munge key: the secret Slurm authenticates with (bookworm's Slurm 22.05 has
no auth/slurm). Made once on the build host beside the CA (security.pki_dir/munge.key,
0600), never regenerated, never rendered, packed or served: a node gets it only in the
enrollment service's reply to an attested node, which writes it to tmpfs
(chaosnode.paths.MUNGE_KEY, 0400 munge:munge).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ChaosError
from .model import Cluster
from .slurm.model import SlurmModel

KEY_FILE = "munge.key"
KEY_BYTES = 128  # what `mungekey --create` makes by default (1024 bits)


class MungeKeyError(ChaosError):
    """The cluster's munge key is missing, unreadable or exposed."""


def key_path(pki_root: Path) -> Path:
    return pki_root / KEY_FILE


def ensure(pki_root: Path) -> bool:
    """Create the key unless one exists (never replaced); True when it created one."""
    path = key_path(pki_root)
    pki_root.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(KEY_BYTES))
    return True


def read(pki_root: Path) -> bytes:
    """The key, refused when anyone but its owner may read it or it is not a munge key."""
    path = key_path(pki_root)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise MungeKeyError(
            f"{path}: cannot read the cluster's munge key ({exc.strerror}); "
            "`chaos-build pki init` makes it, or restore it from backup"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MungeKeyError(
            f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read "
            f"the cluster's munge key; chmod 600 {path}"
        )
    if not 32 <= len(data) <= 1024:
        raise MungeKeyError(
            f"{path}: {len(data)} bytes is not a munge key (32..1024 bytes); restore it from backup"
        )
    return data


def for_cluster(cluster: Cluster, pki_root: Path) -> bytes:
    """The key the enrollment service hands an attested node with its certificate (made
    once if missing); none when the cluster runs no Slurm."""
    if not cluster.section(SlurmModel).workload.slurm:
        return b""
    ensure(pki_root)
    return read(pki_root)


def known_secrets(pki_root: Path) -> dict[str, bytes]:
    """{name: bytes} of the cluster's secrets without a marker, for the audits of out/ and of
    what serve offers (empty when there is no munge key)."""
    path = key_path(pki_root)
    return {f"the cluster's munge key ({path})": read(pki_root)} if path.exists() else {}
