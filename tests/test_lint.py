"""The linters are part of the suite: ruff (check and format) and mypy must be clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from chaostest import ROOT


def tool(name: str) -> list[str]:
    venv = ROOT / ".venv" / "bin" / name
    if venv.exists():
        return [str(venv)]
    found = shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-m", name]


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", "builder", "tyd", "chaosnode", "tests", "bench"],
        ["ruff", "format", "--check", "builder", "tyd", "chaosnode", "tests", "bench"],
        ["mypy"],
    ],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_linter_is_clean(cmd):
    r = subprocess.run(
        [*tool(cmd[0]), *cmd[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout + r.stderr
