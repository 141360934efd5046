"""The one object every build step takes: inputs, derived paths, and the step timings."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import BuildError
from builder.features import FEATURES, TEMPLATE_SUFFIX, head
from builder.image.packages import NODE_PACKAGES, image_packages
from builder.model import Cluster, Node
from builder.resources import data_dir, package_dir

SOURCES_CANDIDATES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
# Bump when the rootfs recipe changes in a way the hashed inputs do not show.
ROOTFS_RECIPE = "1"
HEAD_ROOT = "head-root"
# The modules whose code shapes the base image (a change rebuilds it).
BASE_RECIPE = ("rootfs.py", "prune.py", "base.py", "precompile.py", "packages.py")


@dataclass(frozen=True)
class StepTime:
    name: str
    seconds: float
    skipped: bool


@dataclass
class BuildContext:
    """Inputs of one `chaos-build build`, the paths derived from them, and what happened."""

    cluster: Cluster
    nodes_dir: Path
    out_dir: Path
    cache_dir: Path
    node: str | None = None
    # a snapshot holding overlays/ and the node packages (tests); None: this install's
    repo_dir: Path | None = None
    sources: Path | None = None
    epoch: int = field(default_factory=lambda: int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    staging: Path = Path()
    timings: list[StepTime] = field(default_factory=list)
    kernel_version: str = ""
    # computed once: sources may change while a build runs, the build must not follow them
    rootfs_key: str = ""
    base_key: str = ""
    node_cpios: dict[str, bytes] = field(default_factory=dict)
    bundle_cpio: bytes = b""

    def __post_init__(self) -> None:
        if self.sources is None:
            self.sources = next((p for p in SOURCES_CANDIDATES if p.exists()), None)
        names = [n.name for n in self.cluster.nodes]
        if self.node is not None and self.node not in names:
            raise BuildError(
                f"--node {self.node}: no such node in chaos.yaml (nodes: {', '.join(names)})"
            )
        self.staging = self.out_dir.with_name(f".{self.out_dir.name}.staging")
        self.rootfs_key = self._rootfs_key()
        self.base_key = self._base_key()

    @property
    def nodes(self) -> tuple[Node, ...]:
        if self.node is None:
            return self.cluster.nodes
        return (self.cluster.node(self.node),)

    @property
    def packages(self) -> tuple[str, ...]:
        return image_packages(self.cluster)

    def _rootfs_key(self) -> str:
        h = hashlib.sha256()
        h.update(f"{ROOTFS_RECIPE}\0{self.cluster.image.suite}\0".encode())
        h.update("\0".join(self.packages).encode())
        if self.sources is not None:
            h.update(self.sources.read_bytes())
        return h.hexdigest()[:16]

    def _base_key(self) -> str:
        """Hash of everything the base image is made of; the base is rebuilt when it changes."""
        image = self.cluster.image
        h = hashlib.sha256()
        h.update(self.rootfs_key.encode())
        h.update(f"{image.hardware.value}\0{image.compression.value}\0".encode())
        for feature in FEATURES:  # static files only: templates are each node's, not the base's
            hash_tree(h, self.overlays / feature.name, skip_suffix=TEMPLATE_SUFFIX)
        for tree in (*self.node_packages, vici_dir()):
            hash_tree(h, tree)
        for recipe in BASE_RECIPE:
            h.update((Path(__file__).parent / recipe).read_bytes())
        return h.hexdigest()[:16]

    @property
    def overlays(self) -> Path:
        """overlays/: each feature's folder, whose static files every node's root gets."""
        if self.repo_dir is not None:
            return self.repo_dir / "overlays"
        return data_dir("overlays")

    @property
    def node_packages(self) -> tuple[Path, ...]:
        """The Python packages that run on the nodes."""
        if self.repo_dir is not None:
            return tuple(self.repo_dir / name for name in NODE_PACKAGES)
        return tuple(package_dir(name) for name in NODE_PACKAGES)

    @property
    def rootfs_dir(self) -> Path:
        return self.cache_dir / "rootfs" / self.rootfs_key

    @property
    def apt_cache(self) -> Path:
        """Outer directory mirroring var/cache/apt/archives (copied into the chroot as /var)."""
        return self.cache_dir / "apt"

    @property
    def base_dir(self) -> Path:
        return self.cache_dir / "base" / self.base_key

    @property
    def base_work(self) -> Path:
        return self.cache_dir / "base" / f"{self.base_key}.work"

    @property
    def tree(self) -> Path:
        """The root tree being turned into the base initrd."""
        return self.base_work / "root"

    @property
    def head_tree(self) -> Path:
        """The always-on head's storage modules (and their indexes), kept out of the base."""
        return self.base_work / HEAD_ROOT

    @property
    def head_modules(self) -> Path:
        """The published head_tree of this base."""
        return self.base_dir / HEAD_ROOT

    @property
    def head_overlay(self) -> Path:
        """overlays/head/always-on: what only the always-on head's root gets (its services)."""
        return self.overlays / head.FEATURE.name / head.FEATURE.own_root


def vici_dir() -> Path:
    import vici

    return Path(vici.__file__).parent


def hash_tree(h: hashlib._Hash, root: Path, skip_suffix: str = "") -> None:
    if not root.exists():
        h.update(f"missing:{root.name}".encode())
        return
    for path in sorted(root.rglob("*")):
        if (
            "__pycache__" in path.parts
            or path.is_dir()
            or (skip_suffix and path.name.endswith(skip_suffix))
        ):
            continue
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(f"{path.lstat().st_mode:o}\0".encode())
        h.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
