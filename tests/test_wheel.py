"""`pip install .` as a user does it: the wheel carries every package, the templates, the
overlays (symlinks kept) and the scenarios, and chaos-build works from any directory."""

from __future__ import annotations

import hashlib

import pytest
from installed import Installed, check_commands, install_wheel, run

from builder.image.context import hash_tree
from builder.resources import LAYOUT, data_dir

# runs in the installed venv: where a data folder is and what it holds
LIST = (
    "import sys; from builder.resources import data_dir; d = data_dir(sys.argv[1]); "
    "print(d); print(sorted(p.name for p in d.iterdir()))"
)
DIGEST = (
    "import hashlib; from builder.image.context import hash_tree; "
    "from builder.resources import data_dir; h = hashlib.sha256(); "
    "hash_tree(h, data_dir('overlays')); print(h.hexdigest())"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return install_wheel(tmp_path_factory.mktemp("wheel"))


def test_chaos_build_runs_from_the_installed_wheel(installed):
    assert check_commands(installed)[-1] == "chaos-build show node02 -c chaos.yaml"


def test_installed_overlays_keep_links_and_modes(installed):
    """Same bytes, modes and links as the checkout: so the base image's cache key too."""
    h = hashlib.sha256()
    hash_tree(h, data_dir("overlays"))
    assert run([installed.python, "-c", DIGEST], cwd=installed.work).stdout.strip() == h.hexdigest()


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_every_data_folder_comes_from_the_installed_package(installed, name):
    where, listing = run(
        [installed.python, "-c", LIST, name], cwd=installed.work
    ).stdout.splitlines()
    assert not where.startswith(str(data_dir(name)))
    assert listing == str(sorted(p.name for p in data_dir(name).iterdir()))
