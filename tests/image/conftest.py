"""Fixtures of the image tier: one image built per session, QEMU acceleration probed once."""

from __future__ import annotations

import logging
import os

import pytest
from imagetest import CACHE_DIR, Built, render_default_cluster, snapshot_repo

from builder.image.build import build_image
from builder.image.qemu import probe_accel


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (mmdebstrap --mode=root, chroot)")
    logging.getLogger("chaos.image").setLevel(logging.INFO)
    work = tmp_path_factory.mktemp("image")
    repo = snapshot_repo(work / "repo")
    cluster, nodes_dir = render_default_cluster(work)
    summary = build_image(cluster, nodes_dir, work / "out", CACHE_DIR, repo_dir=repo)
    return Built(cluster, nodes_dir, work / "out", summary, work, repo)


@pytest.fixture(scope="session")
def accel(built: Built) -> list[str]:
    return probe_accel(built.out / "pxe" / "vmlinuz", built.work)
