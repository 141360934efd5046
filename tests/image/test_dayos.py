"""The night scenario's day OS: the 512-byte boot sector boots in QEMU (SeaBIOS, from a
virtio disk), prints its marker on the serial console, and leaves the disk unchanged."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from builder.image.qemu import QEMU
from builder.smoke.dayos import DAY_OS_MARKER, boot_sector
from builder.smoke.lab import make_disk, sha256


def test_boot_sector_shape():
    sector = boot_sector()
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    assert DAY_OS_MARKER.encode() + b"\r\n\0" in sector
    with pytest.raises(ValueError):
        boot_sector("X" * 500)


@pytest.mark.image
def test_the_day_os_prints_its_marker_and_the_disk_stays_unchanged(tmp_path):
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed")
    disk, console = tmp_path / "disk.img", tmp_path / "console.log"
    before = make_disk(disk, size_mb=2, boot_sector=boot_sector())
    proc = subprocess.Popen(
        [
            QEMU,
            "-accel",
            "tcg",
            "-m",
            "64",
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
            "-serial",
            f"file:{console}",
            "-drive",
            f"file={disk},format=raw,if=virtio",
        ]
    )
    try:
        deadline = time.monotonic() + 120  # a bound for a stuck VM, not a measurement
        while time.monotonic() < deadline:
            if console.exists() and DAY_OS_MARKER in console.read_text(errors="replace"):
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert f"{DAY_OS_MARKER}\r\n".encode() in console.read_bytes()
    assert sha256(disk) == before, "the day OS's disk is never written"
