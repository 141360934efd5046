"""Helpers of the image tier: where the caches live, what a session build produced."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from builder import mungekey
from builder.config import load_cluster
from builder.image.packages import NODE_PACKAGES
from builder.model import Cluster
from builder.pki import issue_all, pki_at
from builder.render import render_cluster

ROOT = Path(__file__).resolve().parents[2]
# mmdebstrap's package cache and the rootfs/base caches: fixed, so reruns are warm
CACHE_DIR = Path(os.environ.get("CHAOS_IMAGE_CACHE", "/var/tmp/chaos-image-cache"))
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
UNKNOWN_MAC = "52:54:00:de:ad:01"


@dataclass(frozen=True)
class Built:
    cluster: Cluster
    nodes_dir: Path
    out: Path
    summary: dict[str, object]
    work: Path
    repo: Path


def snapshot_repo(dest: Path) -> Path:
    """overlays/ and the node packages as they are now: the session's builds must not see
    later edits."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "overlays", dest / "overlays", symlinks=True, ignore=ignore)
    for name in NODE_PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    return dest


def render_default_cluster(work: Path) -> tuple[Cluster, Path]:
    """The repo's chaos.yaml with a fresh PKI, rendered by the real renderer."""
    cluster = load_cluster(ROOT / "chaos.yaml")[0]
    pki = pki_at(cluster, work / "pki")
    issue_all(cluster, pki, NOW)
    mungekey.ensure(pki.paths.root)  # as `chaos-build build` does for a Slurm workload
    nodes_dir = work / "nodes"
    render_cluster(cluster, pki, nodes_dir)
    return cluster, nodes_dir
