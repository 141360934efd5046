"""Fixtures shared by every tier (helpers live in chaostest.py), and the wall time per tier
printed at the end of every run (CI prints it as its phases)."""

from __future__ import annotations

import collections
import time

import pytest
from chaostest import default_cluster, skip_fails_in_ci, workdir  # noqa: F401

TIERS = ("smoke", "image", "integration")
_spent: collections.Counter[str] = collections.Counter()
_count: collections.Counter[str] = collections.Counter()
_started = time.monotonic()


def tier(item: pytest.Item) -> str:
    return next((t for t in TIERS if item.get_closest_marker(t)), "unit")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # noqa: ANN201
    start = time.monotonic()
    yield
    _spent[tier(item)] += time.monotonic() - start
    _count[tier(item)] += 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    outcome = yield
    skip_fails_in_ci(outcome.get_result())


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    if not _count:
        return
    terminalreporter.section("wall time per tier (phase)")
    for name in ("unit", "integration", "image", "smoke"):
        if _count[name]:
            terminalreporter.write_line(f"{name:12} {_count[name]:4d} tests  {_spent[name]:8.1f} s")
    terminalreporter.write_line(
        f"{'total':12} {sum(_count.values()):4d} tests  {time.monotonic() - _started:8.1f} s"
    )
