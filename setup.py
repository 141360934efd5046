"""What pyproject.toml cannot say: the code packages are found, and the top-level data folders
(templates/, overlays/, tests/scenarios/) go into the wheel under builder/share/, where
builder.resources.data_dir reads them. Everything else is in pyproject.toml."""

import sys
import tarfile
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from builder.resources import ARCHIVED, LAYOUT, SHARE  # noqa: E402 (stdlib-only imports)

FILES = {f"builder.{SHARE}.{name}": folder for name, folder in LAYOUT.items()
         if name not in ARCHIVED}


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


class BuildPy(build_py):
    """Folders with symlinks (masked units, .wants links) go in as one tar each: a wheel
    would turn a link into a copy, or drop it."""

    def run(self) -> None:
        super().run()
        for name in ARCHIVED:
            tar_path = Path(self.build_lib, "builder", SHARE, f"{name}.tar")
            tar_path.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(tar_path, "w") as tar:
                tar.add(LAYOUT[name], arcname=name, filter=_owned_by_root)


setup(
    packages=[*find_packages(include=["builder*", "tyd*", "chaosnode*"]), *FILES],
    package_dir=FILES,
    package_data={"builder.admin": ["templates/*.j2", "static/*"],
                  **{name: ["**/*"] for name in FILES}},
    cmdclass={"build_py": BuildPy},
)
