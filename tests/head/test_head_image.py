"""The always-on head's part of the image, without building one: its cpio carries its disk
drivers and overlays/head; no other node's cpio and not the shared ISO's bundle do. The
host key the head makes on its state disk, with the real ssh-keygen."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from builder.config import load_cluster
from builder.image.audit import cpio_members, expand
from builder.image.context import BuildContext
from builder.image.nodes import pack_node_overlays
from builder.pki import ensure_ca, pki_at
from builder.render import render_cluster
from chaosnode.statedisk import HOST_KEY, StateDiskError, ensure_host_key, wait_for_disk

ROOT = Path(__file__).resolve().parents[2]
EXT4 = "usr/lib/modules/6.1.0-test/kernel/fs/ext4/ext4.ko"
DROP_IN = "etc/systemd/system/ssh.service.d/chaos-statedisk.conf"


@pytest.fixture
def packed(tmp_path: Path) -> BuildContext:
    cluster = load_cluster(ROOT / "tests/golden/head.yaml")[0]
    nodes = tmp_path / "nodes"
    pki = pki_at(cluster, tmp_path / "pki")
    ensure_ca(cluster, pki, dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    render_cluster(cluster, pki, nodes)
    ctx = BuildContext(
        cluster=cluster,
        nodes_dir=nodes,
        out_dir=tmp_path / "out",
        cache_dir=tmp_path / "cache",
        repo_dir=ROOT,
    )
    ko = ctx.head_modules / EXT4
    ko.parent.mkdir(parents=True)
    ko.write_bytes(b"\x7fELF ext4")
    pack_node_overlays(ctx)
    return ctx


def names(data: bytes) -> dict[str, bytes]:
    members = cpio_members(expand(data))
    assert members is not None
    return dict(members)


def test_the_heads_cpio_carries_its_drivers_and_services(packed: BuildContext) -> None:
    head = names(packed.node_cpios["head"])
    assert head[EXT4] == b"\x7fELF ext4"
    assert b"Requires=chaos-statedisk.service" in head[DROP_IN]
    assert b"blacklist virtio_blk" not in head["etc/modprobe.d/chaos-no-storage.conf"]
    assert "etc/chaos/statedisk.json" in head  # its own rendered tree, on top


@pytest.mark.parametrize("pc", ["pc1", "pc2"])
def test_no_lab_pc_gets_a_disk_driver(packed: BuildContext, pc: str) -> None:
    tree = names(packed.node_cpios[pc])
    assert not [n for n in tree if n.startswith("usr/lib/modules") or ".ko" in n]
    assert DROP_IN not in tree and "etc/modprobe.d/chaos-no-storage.conf" not in tree


def test_the_shared_iso_bundle_carries_no_disk_driver(packed: BuildContext) -> None:
    bundle = names(packed.bundle_cpio)
    assert [n for n in bundle if n.endswith("statedisk.json")]  # the head's tree is there
    assert not [n for n in bundle if ".ko" in n or n.endswith("chaos-statedisk.conf")]


def test_a_base_without_the_head_tree_is_a_clear_error(
    tmp_path: Path, packed: BuildContext
) -> None:
    shutil.rmtree(packed.head_modules)
    with pytest.raises(Exception, match="head-root: missing; the always-on head needs it"):
        pack_node_overlays(packed)


@pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs ssh-keygen (openssh-client)")
def test_the_host_key_is_made_once_and_kept(tmp_path: Path) -> None:
    assert ensure_host_key(tmp_path) is True
    key = tmp_path / HOST_KEY
    first = key.read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600
    assert b"OPENSSH PRIVATE KEY" in first and (tmp_path / f"{HOST_KEY}.pub").exists()
    assert ensure_host_key(tmp_path) is False
    assert key.read_bytes() == first


def test_a_failing_ssh_keygen_is_a_state_disk_error(tmp_path: Path) -> None:
    def fail(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 1, "", "no space left on device")

    with pytest.raises(StateDiskError, match="ssh-keygen .* failed: no space left"):
        ensure_host_key(tmp_path, fail)


def test_the_guard_waits_for_a_disk_that_udev_names_late(tmp_path: Path) -> None:
    disk = tmp_path / "virtio-chaos-state"
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        if clock[0] >= 3:
            disk.write_bytes(b"")

    assert wait_for_disk(str(disk), sleep=sleep, clock=lambda: clock[0]) == str(disk)
    assert clock[0] == 3


def test_a_disk_that_never_comes_is_a_clear_error(tmp_path: Path) -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    with pytest.raises(
        StateDiskError, match="does not exist on this machine; see ls -l /dev/disk/by-id/"
    ):
        wait_for_disk(str(tmp_path / "nothing"), timeout=10, sleep=sleep, clock=lambda: clock[0])
    assert clock[0] == 10
