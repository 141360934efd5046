"""The smoke lab's reading of a guest's console, without QEMU: the result line, a QEMU that
died first, and a timeout, each as a typed error naming the console file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.errors import ChaosError
from builder.smoke.lab import Guest

READY = "CHAOS-READY node=node01 addr=10.0.0.11 nft=ok charon=ok tyd=ok disks=none"


def guest(tmp_path: Path, console: str, proc: subprocess.Popen[bytes] | None) -> Guest:
    g = Guest("node01", "52:54:00:00:00:01", tmp_path, tmp_path / "disk.img", proc=proc)
    g.console.write_text(console)
    return g


def test_result_line_is_read_from_the_console(tmp_path: Path) -> None:
    g = guest(tmp_path, f"[  3.0] booting\r\n{READY}\r\nmore\n", None)
    assert g.result() == READY
    assert g.wait_result(0) == READY


def test_qemu_that_exited_before_the_line_is_an_error(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    g = guest(tmp_path, "[  3.0] booting\n", proc)
    with pytest.raises(ChaosError, match=r"node01: QEMU exited \(0\) before the self-check"):
        g.result()


def test_no_line_in_time_names_the_console(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        g = guest(tmp_path, "[  3.0] booting\n", proc)
        assert g.result() is None
        with pytest.raises(ChaosError, match=r"no CHAOS-READY/FAILED line within 0s; see "):
            g.wait_result(0)
    finally:
        proc.kill()
        proc.wait()
