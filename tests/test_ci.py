"""With CI=true a skipped test fails: CI must not pass by not running a tier."""

from __future__ import annotations

import pytest
from chaostest import skip_fails_in_ci


def report(outcome: str, longrepr: object) -> pytest.TestReport:
    return pytest.TestReport("t.py::test", ("t.py", 1, "test"), {}, outcome, longrepr, "setup")


def test_a_skip_for_a_missing_tool_fails_in_ci():
    r = report("skipped", ("t.py", 1, "Skipped: swtpm is not installed"))
    skip_fails_in_ci(r, ci=True)
    assert r.failed and "swtpm is not installed" in str(r.longrepr)


def test_outside_ci_a_skip_stays_a_skip():
    r = report("skipped", ("t.py", 1, "Skipped: needs root"))
    skip_fails_in_ci(r, ci=False)
    assert r.skipped


def test_passes_and_expected_failures_are_left_alone():
    passed = report("passed", None)
    skip_fails_in_ci(passed, ci=True)
    xfailed = report("skipped", ("t.py", 1, "reason"))
    xfailed.wasxfail = "known"  # type: ignore[attr-defined]
    skip_fails_in_ci(xfailed, ci=True)
    assert passed.passed and xfailed.skipped
