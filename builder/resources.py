"""Where chaos-build finds its own files: the templates, the overlays, the smoke scenarios and
the node packages. One declaration for a checkout and an installed wheel alike.

A wheel carries the top-level folders as package data under builder/share/ (setup.py maps
them from LAYOUT; a folder with symlinks goes in as one tar, unpacked once into the user's
cache). A checkout (editable install, the tests) has them at the top level, where the user
asked for them.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import shutil
import tarfile
from pathlib import Path
from typing import Final, Literal

from builder.errors import ChaosError

DataName = Literal["templates", "overlays", "scenarios"]
# name -> its folder in the checkout
LAYOUT: Final[dict[str, str]] = {
    "templates": "templates",
    "overlays": "overlays",
    "scenarios": "tests/scenarios",
}
# folders holding symlinks (masked units, .wants links), which a wheel cannot carry
ARCHIVED: Final = ("overlays",)
SHARE: Final = "share"
CHECKOUT: Final = Path(__file__).resolve().parent.parent


class ResourceMissing(ChaosError):
    """chaos-build's own files are not where the installation put them."""


def data_dir(name: DataName) -> Path:
    """The folder `name`: from the installed package, else from the checkout."""
    share = importlib.resources.files("builder").joinpath(SHARE)
    if isinstance(share, Path) and share.is_dir():
        return _unpacked(share / f"{name}.tar") if name in ARCHIVED else share / name
    checkout = CHECKOUT / LAYOUT[name]
    if not checkout.is_dir():
        raise ResourceMissing(
            f"{name}/: not in the installed package ({share}) nor in a "
            f"checkout ({checkout}); reinstall chaos (pip install .)"
        )
    return checkout


def package_dir(name: str) -> Path:
    """An importable package's folder (the node packages the image gets)."""
    found = importlib.resources.files(name)
    if not isinstance(found, Path):
        raise ResourceMissing(
            f"{name}: installed as {found}, not as files on disk; "
            "install chaos unzipped (pip install .)"
        )
    return found


def _unpacked(archive: Path) -> Path:
    """The tar's folder, unpacked once per content into the user's cache (links kept)."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chaos"
    dest = cache / f"{archive.stem}-{digest}"
    if not dest.is_dir():
        staging = cache / f".{dest.name}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="tar")
        try:
            staging.rename(dest)
        except OSError:  # another process unpacked it first
            shutil.rmtree(staging, ignore_errors=True)
    return dest / archive.stem
