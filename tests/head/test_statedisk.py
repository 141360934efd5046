"""The state-disk guard on real loop devices: blank -> formatted, chaos's own -> kept,
someone's ext4 -> refused, a GPT -> refused, data without a signature -> refused."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaosnode.paths import STATE_LABEL
from chaosnode.statedisk import StateDiskError, Verdict, ensure_filesystem, inspect

pytestmark = pytest.mark.integration


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("losetup") or not Path("/dev/loop-control").exists():
        pytest.skip("needs root and loop devices")
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(64 << 20)
    device = sh("losetup", "--find", "--show", str(image))
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def uuid(device: str) -> str:
    return sh("blkid", "-p", "-s", "UUID", "-o", "value", device)


def test_a_blank_disk_is_formatted_with_chaos_label(disk):
    assert inspect(disk, STATE_LABEL).verdict is Verdict.BLANK
    assert ensure_filesystem(disk, STATE_LABEL).verdict is Verdict.BLANK
    assert sh("blkid", "-p", "-s", "LABEL", "-o", "value", disk) == STATE_LABEL


def test_chaos_own_disk_is_kept_not_reformatted(disk):
    ensure_filesystem(disk, STATE_LABEL)
    before = uuid(disk)
    seen = ensure_filesystem(disk, STATE_LABEL)
    assert seen.verdict is Verdict.OURS and uuid(disk) == before


def test_someone_elses_ext4_is_refused_and_untouched(disk):
    sh("mkfs.ext4", "-q", "-L", "scratch", disk)
    before = uuid(disk)
    with pytest.raises(
        StateDiskError, match="refusing .*: a ext4 filesystem labelled 'scratch'.*holds data"
    ):
        ensure_filesystem(disk, STATE_LABEL)
    assert uuid(disk) == before


def test_a_partition_table_is_refused(disk):
    if shutil.which("sgdisk"):
        sh("sgdisk", "-o", disk)
    elif shutil.which("sfdisk"):
        subprocess.run(["sfdisk", "-q", disk], input="label: gpt\n", text=True, check=True)
    else:
        pytest.skip("neither sgdisk nor sfdisk")
    with pytest.raises(StateDiskError, match="a gpt partition table"):
        ensure_filesystem(disk, STATE_LABEL)


def test_data_without_a_signature_is_refused(disk):
    with open(disk, "r+b") as f:
        f.seek((64 << 20) - 4096)
        f.write(b"someone's bytes")
    with pytest.raises(StateDiskError, match="no known signature, but data"):
        ensure_filesystem(disk, STATE_LABEL)
