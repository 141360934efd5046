"""The secret audit of out/ and of what serve offers (builder/image/audit.py), on real newc
archives made by the image's own packer, compressed by real zstd."""

from __future__ import annotations

import os
import subprocess

from builder.image.audit import secrets_in
from builder.image.cpio import pack_tree
from builder.model import KeyType
from builder.pki import key_pem, new_key

MUNGE_KEY = os.urandom(128)  # made at run time, like every key in the tests


def archive(tmp_path, files: dict[str, bytes]) -> bytes:
    root = tmp_path / "root"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return pack_tree(root, 0)


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-c"], input=data, capture_output=True, check=True).stdout


def test_a_program_naming_its_default_key_file_is_not_a_secret(tmp_path):
    # munged and mungekey carry "/etc/munge/munge.key" as their default path
    data = archive(tmp_path, {"usr/sbin/munged": b"\x7fELF...\0/etc/munge/munge.key\0..."})
    assert secrets_in(zstd(data), {"the munge key": MUNGE_KEY}) == []


def test_key_files_pem_keys_and_the_munge_key_bytes_are_found(tmp_path):
    pem = key_pem(new_key(KeyType.ED25519))
    data = archive(
        tmp_path,
        {
            "etc/munge/munge.key": b"k" * 128,
            "etc/swanctl/private/node.key": b"x",
            "etc/ssl/leak.txt": b"notes\n" + pem,
            "usr/share/blob": b"..." + MUNGE_KEY + b"...",
        },
    )
    found = secrets_in(zstd(data), {"the munge key": MUNGE_KEY})
    assert "etc/munge/munge.key (a key file)" in found
    assert "etc/swanctl/private/node.key (a key file)" in found
    assert f"etc/ssl/leak.txt: {pem.decode().splitlines()[0]}" in found
    assert "the munge key" in found
