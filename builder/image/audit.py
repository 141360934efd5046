"""Proof that an artifact carries no secret: a private key in any file, cpio member or
compressed initrd of out/ (or anything serve hands out) is found and named.

Looked for: PEM private keys of every kind (PKCS#8, RSA, EC, OpenSSH), strongSwan and
munge key file names, and by its bytes the cluster's munge key (it has no marker).
Compressed data (zstd, xz, gzip) is opened first; an initrd made of several concatenated
archives is scanned as a whole.
"""

from __future__ import annotations

import gzip
import lzma
import re
from collections.abc import Mapping
from pathlib import Path

from builder.run import run

# a whole PEM private key (with key material: library code quotes the BEGIN line alone)
PEM_KEY = re.compile(
    rb"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY)-----\r?\n[A-Za-z0-9+/=\r\n]{40,}"
    rb"-----END \1-----"
)
# or a key file's name as a cpio member (inside a member's contents such a name is only a
# program's default path: munged and mungekey carry "munge.key")
SECRET = re.compile(PEM_KEY.pattern + rb"|(?:^|/)private/[^/\0]+\.key\0|munge\.key\0")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"


def expand(data: bytes) -> bytes:
    """The data as a node would read it: compressed payloads decompressed (best effort)."""
    if data.startswith(ZSTD_MAGIC):
        return run(["zstd", "-dcq"], input=data, check=False, quiet=True).stdout
    if data.startswith(XZ_MAGIC):
        try:
            return lzma.decompress(data)
        except lzma.LZMAError:
            return data
    if data.startswith(GZIP_MAGIC):
        try:
            return gzip.decompress(data)
        except OSError:
            return data
    return data


# Public test vectors that libraries carry for their power-on self-tests, not anyone's key.
SELF_TEST_KEYS = {
    "usr/lib/x86_64-linux-gnu/libgnutls.so.": "GnuTLS's FIPS self-test keys",
}
CPIO_MAGIC = b"070701"
CPIO_HEADER = 110


def cpio_members(data: bytes) -> list[tuple[str, bytes]] | None:
    """(name, contents) of each member of a newc cpio (or several in a row, with padding);
    None if data is not one."""
    members, pos = [], 0
    while data.startswith(CPIO_MAGIC, pos):
        field = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = field[6], field[11]
        name = data[pos + CPIO_HEADER : pos + CPIO_HEADER + namesize - 1].decode(errors="replace")
        start = (pos + CPIO_HEADER + namesize + 3) & ~3
        members.append((name, data[start : start + size]))
        pos = (start + size + 3) & ~3
        while pos < len(data) and data[pos] == 0:  # padding between archives
            pos += 1
    return members if members else None


def _markers(blob: bytes, pattern: re.Pattern[bytes] = SECRET) -> set[str]:
    return {
        m.group(0).strip(b"\0").splitlines()[0].decode(errors="replace")
        for m in pattern.finditer(blob)
    }


def secrets_in(data: bytes, known: Mapping[str, bytes] | None = None) -> list[str]:
    """What in this blob looks like a secret: markers, deduplicated; inside a cpio archive
    (also a compressed one) each member is named, library self-test keys left out. `known`
    names secrets without a marker, by their bytes (the cluster's munge key)."""
    found: set[str] = set()
    for blob in dict.fromkeys((data, expand(data))):
        found |= {name for name, secret in (known or {}).items() if secret in blob}
        members = cpio_members(blob)
        if members is None:
            found |= _markers(blob)
            continue
        for name, contents in members:
            if SECRET.search(name.encode() + b"\0"):
                found.add(f"{name} (a key file)")
            elif not name.startswith(tuple(SELF_TEST_KEYS)):
                found |= {f"{name}: {m}" for m in _markers(contents, PEM_KEY)}
    return sorted(found)


def scan_tree(root: Path, known: Mapping[str, bytes] | None = None) -> dict[str, list[str]]:
    """{relative path: secrets found} for every file under root that holds one."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        if found := secrets_in(path.read_bytes(), known):
            out[path.relative_to(root).as_posix()] = found
    return out
