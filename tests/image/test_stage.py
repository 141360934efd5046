"""The Secure Boot PXE stage (builder/image/stage.py): its module order, its contents, the
node's stage cpio. Pure: a fake busybox and modules.dep; one test reads the image cache's
kernel (Debian 12's) for which NIC modules it really needs. The init's text is golden
(tests/golden/serve/stage-init, tests/test_hostconf.py)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from imagetest import CACHE_DIR

from builder.errors import BuildError
from builder.image import stage
from builder.image.prune import read_deps

EPOCH = 1_700_000_000
ROOT_SHA = hashlib.sha256(b"the root").hexdigest()
CACHE = CACHE_DIR / "rootfs"
DEPS = {
    "kernel/drivers/net/virtio_net.ko": [
        "kernel/drivers/net/net_failover.ko",
        "kernel/net/core/failover.ko",
        "kernel/drivers/virtio/virtio.ko",
    ],
    "kernel/drivers/net/net_failover.ko": ["kernel/net/core/failover.ko"],
    "kernel/net/core/failover.ko": [],
    "kernel/drivers/virtio/virtio.ko": [],
    "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko": [],
}


def unpack(archive: bytes, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=archive, cwd=dest, check=True
    )


def test_modules_load_after_their_dependencies_and_builtins_are_skipped() -> None:
    order = stage.insmod_order(DEPS, {"kernel/drivers/virtio/virtio.ko"}, ("virtio_net", "igb"))
    assert order == [
        "kernel/net/core/failover.ko",
        "kernel/drivers/net/net_failover.ko",
        "kernel/drivers/net/virtio_net.ko",
    ]


def test_stage_holds_init_busybox_script_and_modules_only(tmp_path: Path) -> None:
    order = stage.insmod_order(DEPS, set(), ("virtio_net",))
    modules = {path: f"module {path}".encode() for path in order}
    packed = stage.stage_archive(b"BUSYBOX", modules, ROOT_SHA, order, EPOCH)
    assert packed == stage.stage_archive(b"BUSYBOX", modules, ROOT_SHA, order, EPOCH)
    unpack(packed, tmp_path / "stage")
    found = sorted(
        p.relative_to(tmp_path / "stage").as_posix() for p in (tmp_path / "stage").rglob("*")
    )
    assert found == [
        "bin",
        "bin/busybox",
        "etc",
        "etc/udhcpc.script",
        "init",
        "lib",
        "lib/modules",
        "lib/modules/failover.ko",
        "lib/modules/net_failover.ko",
        "lib/modules/virtio.ko",
        "lib/modules/virtio_net.ko",
        "newroot",
    ]
    init = (tmp_path / "stage/init").read_text()
    assert f'[ "$got" = "{ROOT_SHA}" ]' in init
    assert 'refuse "root sha256 $got, this build made ' + ROOT_SHA in init
    assert init.index("insmod /lib/modules/virtio.ko") < init.index("virtio_net.ko")
    assert (tmp_path / "stage/init").stat().st_mode & 0o111


def test_a_different_root_makes_a_different_stage() -> None:
    other = hashlib.sha256(b"the root, one byte changed").hexdigest()
    assert stage.stage_archive(b"B", {}, ROOT_SHA, [], EPOCH) != stage.stage_archive(
        b"B", {}, other, [], EPOCH
    )


def test_a_stage_without_the_root_digest_is_refused() -> None:
    with pytest.raises(BuildError, match="root's sha256"):
        stage.stage_init([], "")


def test_node_stage_cpio_puts_the_overlay_under_its_prefix(tmp_path: Path) -> None:
    (tmp_path / "tree/etc/chaos").mkdir(parents=True)
    (tmp_path / "tree/etc/chaos/node.json").write_text("{}\n")
    unpack(stage.node_stage_cpio(tmp_path / "tree", EPOCH), tmp_path / "out")
    assert (tmp_path / "out" / stage.OVERLAY_PREFIX / "etc/chaos/node.json").read_text() == "{}\n"
    assert not (tmp_path / "out/etc").exists()


def cached_moddir() -> Path:
    moddirs = sorted(CACHE.glob("*/usr/lib/modules/*/modules.dep"))
    if not moddirs:
        pytest.skip(f"no built rootfs in {CACHE} (make build fills it)")
    return moddirs[0].parent


@pytest.mark.image
@pytest.mark.usefixtures("built")  # the image tier's build fills the cache first (CI is cold)
def test_the_image_kernel_gives_a_loadable_nic_set() -> None:
    moddir = cached_moddir()

    order = stage.insmod_order(read_deps(moddir), stage.read_builtin(moddir), stage.NIC_MODULES)
    names = [Path(p).name for p in order]
    for nic in ("virtio_net.ko", "e1000e.ko", "igb.ko", "r8169.ko"):
        assert nic in names
    assert names.index("virtio_pci.ko") > names.index("virtio.ko")
    assert names.index("r8169.ko") > names.index("libphy.ko")
    size = sum((moddir / p).stat().st_size for p in order)
    assert size < 3 * 1024 * 1024, f"NIC modules are {size} bytes"


def test_the_stage_is_compressed_for_the_kernel() -> None:
    packed = stage.stage_archive(b"BUSYBOX", {}, ROOT_SHA, [], EPOCH)
    compressed = stage.compress_stage(packed)
    assert compressed[:4] == b"\x28\xb5\x2f\xfd"
    assert len(compressed) % 4 == 0
