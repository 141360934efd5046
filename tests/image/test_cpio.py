"""The pure-Python overlay cpio: readable by cpio(1), reproducible, complete, clamped."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.image import cpio

EPOCH = 1_700_000_000


def make_tree(root: Path) -> None:
    (root / "etc/chaos").mkdir(parents=True)
    (root / "etc/chaos/node.json").write_text('{"name": "node01"}\n')
    (root / "etc/swanctl/private").mkdir(parents=True)
    key = root / "etc/swanctl/private/node01.key"
    key.write_bytes(b"KEY" * 7)
    key.chmod(0o600)
    (root / "etc/hostname").write_text("node01\n")
    (root / "etc/localtime").symlink_to("/usr/share/zoneinfo/UTC")


def unpack(archive: bytes, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(
        ["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=archive, cwd=dest, check=True
    )


def test_roundtrip_through_cpio(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    unpack(cpio.pack_tree(tmp_path / "src", EPOCH), tmp_path / "out")
    out = tmp_path / "out"
    assert (out / "etc/chaos/node.json").read_text() == '{"name": "node01"}\n'
    assert (out / "etc/swanctl/private/node01.key").stat().st_mode & 0o777 == 0o600
    assert os.readlink(out / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert (out / "etc/hostname").stat().st_mtime == EPOCH


def test_same_tree_same_bytes_whatever_the_file_times(tmp_path: Path) -> None:
    make_tree(tmp_path / "a")
    first = cpio.pack_tree(tmp_path / "a", EPOCH)
    os.utime(tmp_path / "a/etc/hostname", (EPOCH + 999, EPOCH + 999))
    assert cpio.pack_tree(tmp_path / "a", EPOCH) == first
    make_tree(tmp_path / "b")
    assert cpio.pack_tree(tmp_path / "b", EPOCH) == first
    (tmp_path / "b/etc/hostname").write_text("node02\n")
    assert cpio.pack_tree(tmp_path / "b", EPOCH) != first


def test_older_mtimes_are_kept_newer_clamped(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    os.utime(tmp_path / "src/etc/hostname", (1000, 1000))
    unpack(cpio.pack_tree(tmp_path / "src", EPOCH), tmp_path / "out")
    assert (tmp_path / "out/etc/hostname").stat().st_mtime == 1000
    assert (tmp_path / "out/etc/chaos/node.json").stat().st_mtime == EPOCH


def test_parents_sorted_and_prefixed(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    data = cpio.pack_tree(tmp_path / "src", EPOCH, prefix="usr/lib/chaos/nodes/node01")
    names = (
        subprocess.run(["cpio", "-it", "--quiet"], input=data, capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    assert names == sorted(names)
    for parent in (
        "usr",
        "usr/lib",
        "usr/lib/chaos",
        "usr/lib/chaos/nodes",
        "usr/lib/chaos/nodes/node01",
        "usr/lib/chaos/nodes/node01/etc",
    ):
        assert parent in names
    assert "usr/lib/chaos/nodes/node01/etc/chaos/node.json" in names


def test_records_are_4_byte_aligned(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    data = cpio.pack_tree(tmp_path / "src", EPOCH)
    assert len(data) % 4 == 0
    assert data.startswith(b"070701")
    assert b"TRAILER!!!" in data[-128:]


def test_refuses_device_nodes(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    os.mkfifo(tmp_path / "src/fifo")
    with pytest.raises(Exception, match="only files, directories and symlinks"):
        cpio.pack_tree(tmp_path / "src", EPOCH)
