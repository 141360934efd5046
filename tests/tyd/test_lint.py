"""ruff and mypy are part of the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install ruff)")
    proc = subprocess.run([ruff, "check", "tyd", "tests/tyd", "bench/tyd_join.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "tyd"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    if "No module named mypy" in proc.stderr:
        pytest.skip("mypy is not installed (pip install mypy)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
