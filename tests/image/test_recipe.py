"""Module selection, unit enabling and boot configs, without building an image."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.image import base, prune
from builder.model import Hardware

DEPS = {
    "kernel/net/ipv4/esp4.ko": ["kernel/net/xfrm/xfrm_algo.ko"],
    "kernel/net/xfrm/xfrm_algo.ko": [],
    "kernel/net/netfilter/nf_tables.ko": ["kernel/lib/libcrc32c.ko"],
    "kernel/lib/libcrc32c.ko": [],
    "kernel/drivers/net/virtio_net.ko": ["kernel/drivers/net/net_failover.ko"],
    "kernel/drivers/net/net_failover.ko": [],
    "kernel/drivers/net/ethernet/intel/igb/igb.ko": ["kernel/drivers/dca/dca.ko"],
    "kernel/drivers/dca/dca.ko": [],
    "kernel/drivers/ata/ahci.ko": ["kernel/drivers/ata/libahci.ko"],
    "kernel/drivers/ata/libahci.ko": [],
    "kernel/drivers/nvme/host/nvme.ko": [],
    "kernel/drivers/block/virtio_blk.ko": [],
    "kernel/fs/binfmt_misc.ko": [],
    "kernel/fs/ext4/ext4.ko": ["kernel/fs/jbd2/jbd2.ko", "kernel/lib/crc16.ko"],
    "kernel/fs/jbd2/jbd2.ko": [],
    "kernel/lib/crc16.ko": [],
    "kernel/drivers/scsi/sd_mod.ko": ["kernel/drivers/scsi/scsi_mod.ko"],
    "kernel/drivers/scsi/scsi_mod.ko": [],
    "kernel/drivers/usb/storage/usb-storage.ko": [],
    "kernel/fs/nfsd/nfsd.ko": ["kernel/net/sunrpc/sunrpc.ko"],
    "kernel/fs/nfs/nfsv4.ko": ["kernel/fs/nfs/nfs.ko", "kernel/net/sunrpc/sunrpc.ko"],
    "kernel/fs/nfs/nfs.ko": ["kernel/net/sunrpc/sunrpc.ko"],
    "kernel/net/sunrpc/sunrpc.ko": [],
    "kernel/sound/core/snd.ko": [],
}


def test_qemu_profile_keeps_ipsec_netfilter_virtio_and_deps() -> None:
    keep = prune.select_modules(DEPS, Hardware.QEMU)
    assert {
        "kernel/net/ipv4/esp4.ko",
        "kernel/net/xfrm/xfrm_algo.ko",
        "kernel/net/netfilter/nf_tables.ko",
        "kernel/lib/libcrc32c.ko",
        "kernel/drivers/net/virtio_net.ko",
        "kernel/drivers/net/net_failover.ko",
        "kernel/fs/binfmt_misc.ko",
    } <= keep
    assert "kernel/drivers/net/ethernet/intel/igb/igb.ko" not in keep
    assert "kernel/sound/core/snd.ko" not in keep


def test_lab_profile_keeps_desktop_nics() -> None:
    keep = prune.select_modules(DEPS, Hardware.LAB)
    assert {"kernel/drivers/net/ethernet/intel/igb/igb.ko", "kernel/drivers/dca/dca.ko"} <= keep


@pytest.mark.parametrize("hardware", list(Hardware))
def test_no_profile_ships_storage(hardware: Hardware) -> None:
    keep = prune.select_modules(DEPS, hardware)
    assert not [m for m in keep if prune.is_storage(m)]
    assert "kernel/drivers/ata/ahci.ko" not in keep
    assert "kernel/fs/ext4/ext4.ko" not in keep


def test_every_node_gets_nfs_client_and_server_but_no_disk() -> None:
    keep = prune.select_modules(DEPS, Hardware.QEMU)
    assert {
        "kernel/fs/nfsd/nfsd.ko",
        "kernel/fs/nfs/nfsv4.ko",
        "kernel/fs/nfs/nfs.ko",
        "kernel/net/sunrpc/sunrpc.ko",
    } <= keep


def test_the_head_alone_gets_its_disk_drivers_and_ext4() -> None:
    keep = prune.select_modules(DEPS, Hardware.LAB)
    head = prune.select_head_modules(DEPS, keep)
    assert head == {
        "kernel/drivers/block/virtio_blk.ko",
        "kernel/drivers/ata/ahci.ko",
        "kernel/drivers/ata/libahci.ko",
        "kernel/drivers/nvme/host/nvme.ko",
        "kernel/drivers/scsi/sd_mod.ko",
        "kernel/drivers/scsi/scsi_mod.ko",
        "kernel/fs/ext4/ext4.ko",
        "kernel/fs/jbd2/jbd2.ko",
        "kernel/lib/crc16.ko",
    }
    assert not head & keep
    assert "kernel/drivers/usb/storage/usb-storage.ko" not in head


def test_a_kernel_without_a_head_driver_is_refused() -> None:
    deps = {k: v for k, v in DEPS.items() if "nvme" not in k}
    with pytest.raises(BuildError, match="no module nvme"):
        prune.select_head_modules(deps, set())


def test_move_head_modules_takes_them_and_the_indexes_out(tmp_path: Path) -> None:
    moddir = tmp_path / "root/usr/lib/modules/6.1.0"
    for rel in ("kernel/fs/ext4/ext4.ko", "kernel/net/xfrm/xfrm_algo.ko"):
        (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
        (moddir / rel).write_bytes(b"ko")
    (moddir / "modules.dep").write_text("kernel/fs/ext4/ext4.ko:\n")
    head = tmp_path / "head/usr/lib/modules/6.1.0"
    prune.move_head_modules(moddir, head, {"kernel/fs/ext4/ext4.ko"})
    prune.remove_empty_dirs(moddir / "kernel")
    assert (head / "kernel/fs/ext4/ext4.ko").read_bytes() == b"ko"
    assert (head / "modules.dep").read_text() == "kernel/fs/ext4/ext4.ko:\n"
    assert not (moddir / "kernel/fs/ext4").exists()
    assert (moddir / "kernel/net/xfrm/xfrm_algo.ko").exists()


def test_the_heads_blacklist_lets_its_disks_through_and_no_more() -> None:
    overlays = Path(__file__).resolve().parents[2] / "overlays"
    common = (overlays / "common/etc/modprobe.d/chaos-no-storage.conf").read_text().split()
    head = (overlays / "head/always-on/etc/modprobe.d/chaos-no-storage.conf").read_text().split()
    for module in ("ahci", "nvme", "sd_mod", "virtio_blk"):
        assert module in common and module not in head
    for module in ("usb_storage", "uas", "mmc_block", "virtio_scsi", "loop", "nbd"):
        assert module in head


def test_a_dependency_on_storage_is_refused() -> None:
    deps = {**DEPS, "kernel/net/ipv4/esp4.ko": ["kernel/drivers/block/virtio_blk.ko"]}
    with pytest.raises(BuildError, match="virtio_blk"):
        prune.select_modules(deps, Hardware.QEMU)


def test_storage_blacklist_covers_the_common_controllers() -> None:
    conf = Path(__file__).resolve().parents[2] / "overlays/common/etc/modprobe.d"
    text = (conf / "chaos-no-storage.conf").read_text().split()
    for module in ("ahci", "nvme", "sd_mod", "virtio_blk", "usb_storage", "uas"):
        assert module in text


def test_enable_unit_links_wanted_by_and_socket(tmp_path: Path) -> None:
    units = tmp_path / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "x.service").write_text(
        "[Install]\nWantedBy=multi-user.target\nAlso=x.socket x-wait-online.service\n"
    )
    (units / "x.socket").write_text("[Install]\nWantedBy=sockets.target\n")
    (units / "x-wait-online.service").write_text("[Install]\nWantedBy=network-online.target\n")
    base.enable_unit(tmp_path, "x.service")
    wants = tmp_path / "etc/systemd/system"
    assert (wants / "multi-user.target.wants/x.service").readlink() == Path(
        "/usr/lib/systemd/system/x.service"
    )
    assert (wants / "sockets.target.wants/x.socket").is_symlink()
    assert not (wants / "network-online.target.wants").exists()
    base.enable_unit(tmp_path, "absent.service")  # not installed: nothing to link


def test_disable_unit_drops_dangling_links_of_the_packages(tmp_path: Path) -> None:
    # what munge's postinst leaves: a link into the image, dangling on the build host
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "munge.service").symlink_to("/lib/systemd/system/munge.service")
    (wants / "tyd.service").symlink_to("/etc/systemd/system/tyd.service")
    base.disable_unit(tmp_path, "munge.service")
    assert not (wants / "munge.service").is_symlink()
    assert (wants / "tyd.service").is_symlink()
    base.disable_unit(tmp_path / "none", "munge.service")  # no systemd dir: nothing to do


def test_lz4_is_refused_before_any_work(tmp_path: Path) -> None:
    import dataclasses

    from builder.config import load_cluster
    from builder.image.build import build_image
    from builder.model import Compression

    cluster = load_cluster(Path(__file__).resolve().parents[2] / "chaos.yaml")[0]
    lz4 = dataclasses.replace(
        cluster, image=dataclasses.replace(cluster.image, compression=Compression.LZ4)
    )
    with pytest.raises(BuildError, match="lz4"):
        build_image(lz4, tmp_path / "nodes", tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "out").exists()


def other_process_takes(lock_file: Path) -> int:
    """Exit code of another process that tries the cache's flock without waiting: 0 when it
    got it, 3 when a build holds it."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    probe = (
        "import fcntl, sys\n"
        f"f = open({str(lock_file)!r}, 'a')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode


def test_a_second_build_on_the_same_cache_waits_for_the_first(tmp_path: Path, caplog) -> None:
    """Two builds on one cache (two admins, two test tiers side by side) take turns: the
    second waits while the first holds the cache's flock, and says so."""
    import logging  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from builder.image.build import LOCK_FILE, cache_lock  # noqa: PLC0415

    def other_process() -> int:
        return other_process_takes(tmp_path / LOCK_FILE)

    with cache_lock(tmp_path):
        assert other_process() == 3, "another process took the cache while a build held it"
    assert other_process() == 0, "the cache stayed locked after the build"

    got = threading.Event()

    def second_build() -> None:
        with cache_lock(tmp_path):
            got.set()

    with caplog.at_level(logging.INFO, logger="chaos.image"), cache_lock(tmp_path):
        waiter = threading.Thread(target=second_build)
        waiter.start()
        assert not got.wait(0.5), "a second build went on while the first held the cache"
    waiter.join(5)
    assert got.is_set() and "waiting for another build that uses the cache" in caplog.text


def test_the_build_holds_the_cache_from_its_first_cache_step_on(
    tmp_path: Path, monkeypatch
) -> None:
    """The checks before it write nothing (not even the cache folder); from the rootfs step
    on, another process cannot take the cache."""
    from types import SimpleNamespace  # noqa: PLC0415

    from builder.image import build  # noqa: PLC0415

    cache = tmp_path / "cache"
    seen: dict[str, object] = {}

    def check_host_tools(ctx: object) -> bool:
        seen["cache before the checks"] = cache.exists()
        return True

    def install_rootfs(ctx: object) -> bool:
        seen["other process"] = other_process_takes(cache / build.LOCK_FILE)
        return False

    monkeypatch.setattr(build, "install_rootfs", install_rootfs)
    ctx = SimpleNamespace(cache_dir=cache, timings=[])
    build.run_steps(ctx, [check_host_tools, install_rootfs])  # type: ignore[arg-type]
    assert seen == {"cache before the checks": False, "other process": 3}
