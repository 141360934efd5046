"""A pure-Python newc cpio writer for per-node overlays: sorted, root-owned, mtimes clamped.

The kernel unpacks concatenated archives in order, so a node overlay appended to the base
initrd (or loaded as a second initrd) overwrites base files. Parent directories are always
emitted so an overlay can be unpacked on its own, and the same tree gives the same bytes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from builder.errors import BuildError

TRAILER = "TRAILER!!!"


def pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(*, ino: int, mode: int, nlink: int, mtime: int, size: int, namesize: int) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, namesize, 0)
    return b"070701" + b"".join(f"{f:08x}".encode() for f in fields)


def entry(name: str, mode: int, data: bytes, mtime: int, ino: int) -> bytes:
    """One newc record (header, name, data, each padded to 4 bytes)."""
    encoded = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    head = _header(
        ino=ino, mode=mode, nlink=nlink, mtime=mtime, size=len(data), namesize=len(encoded)
    )
    return head + encoded + pad4(len(head) + len(encoded)) + data + pad4(len(data))


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield base / name


Entry = tuple[int, bytes, int]  # mode, data, mtime


def tree_entries(root: Path, epoch: int, prefix: str = "") -> dict[str, Entry]:
    """Archive name -> (mode, data, mtime clamped to epoch) for every path under root."""
    entries: dict[str, Entry] = {}
    parts = PurePosixPath(prefix).parts if prefix else ()
    for i in range(1, len(parts) + 1):
        entries["/".join(parts[:i])] = (stat.S_IFDIR | 0o755, b"", epoch)
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        name = f"{prefix.strip('/')}/{rel}" if prefix else rel
        st = path.lstat()
        perm = stat.S_IMODE(st.st_mode)
        mtime = min(int(st.st_mtime), epoch)
        if stat.S_ISDIR(st.st_mode):
            entries[name] = (stat.S_IFDIR | perm, b"", mtime)
        elif stat.S_ISLNK(st.st_mode):
            entries[name] = (stat.S_IFLNK | 0o777, os.readlink(path).encode(), mtime)
        elif stat.S_ISREG(st.st_mode):
            entries[name] = (stat.S_IFREG | perm, path.read_bytes(), mtime)
        else:
            raise BuildError(f"{path}: only files, directories and symlinks go into an overlay")
    return entries


def archive(entries: dict[str, Entry], epoch: int) -> bytes:
    """A complete newc archive of entries, sorted by name, with every parent directory."""
    full = dict(entries)
    for name in entries:
        parent = PurePosixPath(name).parent
        while str(parent) != ".":
            full.setdefault(str(parent), (stat.S_IFDIR | 0o755, b"", epoch))
            parent = parent.parent
    out = bytearray()
    for ino, name in enumerate(sorted(full), start=1):
        mode, data, mtime = full[name]
        out += entry(name, mode, data, mtime, ino)
    out += entry(TRAILER, 0, b"", 0, 0)
    return bytes(out)


def pack_tree(root: Path, epoch: int, prefix: str = "") -> bytes:
    """Pack a directory tree (e.g. one rendered node overlay) as a reproducible newc cpio."""
    return archive(tree_entries(root, epoch, prefix), epoch)
