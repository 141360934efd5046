"""Replace a file atomically: readers see the old file or the new one, never a part, and a
crash leaves one of the two. The one way every program of chaos (builder, tyd, the node
programs) writes a file that someone else reads; runs on the build host and on the nodes
(Debian's python3, stdlib only)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """path gets data with mode from the first byte (a key is never readable by others),
    synced, renamed into place, the directory synced too."""
    tmp = stage_file(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


def stage_file(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    """A synced temp file beside path with its final mode: the caller renames it into place
    (or several at once, as a key and its certificate are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # left by a crashed run of the same pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fchmod(f.fileno(), mode)  # the umask may have taken bits off
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def sync_dir(directory: Path) -> None:
    """Make a rename in directory survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path, limit: int) -> Any:
    """A JSON file another program keeps (tyd's map, its status), read no further than
    limit bytes; ValueError when it is bigger or no JSON, OSError when it cannot be read."""
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return json.loads(data)
