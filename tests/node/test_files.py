"""The one atomic_write (builder, tyd and the node programs) and the one console say."""

from __future__ import annotations

import os
import stat

import pytest

from chaosnode import console, files


def test_atomic_write_replaces_with_the_mode_from_the_first_byte(tmp_path):
    path = tmp_path / "sub" / "node.key"
    files.atomic_write(path, b"old")
    old_umask = os.umask(0o077)
    try:
        files.atomic_write(path, "new", 0o640)  # the umask does not take bits off
    finally:
        os.umask(old_umask)
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == ["node.key"]  # no temp file left


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "map.json"
    files.atomic_write(path, "{}")

    def refuse(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, '{"members": []}')
    assert path.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["map.json"]


def test_say_is_one_flushed_line_on_stderr_with_the_program(capsys):
    console.say("certificate renewed", "chaos-renew")
    console.say("serving out/pxe")
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == "chaos-renew: certificate renewed\nserving out/pxe\n"
