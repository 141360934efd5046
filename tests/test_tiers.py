"""`make test` runs the tiers in two phases (tests/tiers.py): every test runs in exactly one."""

from __future__ import annotations

import itertools

import pytest
from _pytest.mark.expression import Expression
from tiers import BESIDE, EARLY_LAB, IMAGE, SMOKE, ok, own_selection

MARKERS = ("integration", "image", "smoke")


@pytest.mark.parametrize(
    "marks",
    [set(c) for n in range(len(MARKERS) + 1) for c in itertools.combinations(MARKERS, n)],
    ids=lambda m: "+".join(sorted(m)) or "unit",
)
def test_every_test_runs_in_exactly_one_phase(marks):
    chosen = [
        t.name
        for t in (BESIDE, IMAGE, SMOKE)
        if Expression.compile(t.marks).evaluate(lambda name, marks=marks: name in marks)
    ]
    assert len(chosen) == 1, chosen


def test_an_empty_selection_passes_and_a_failure_does_not():
    assert ok(0) and ok(5) and not ok(1) and not ok(2)


def test_a_selection_of_ones_own_runs_one_pytest():
    assert own_selection(["-m", "image"]) and own_selection(["-mimage"])
    assert not own_selection(["-k", "night", "--maxfail=1", "-x"])


def test_the_early_lab_is_one_of_cis_labs():
    """Phase 1 runs it by its pytest id and phase 2 deselects it: a renamed lab must fail
    here, not run twice or never."""
    from chaostest import ROOT  # noqa: PLC0415

    from builder.smoke.scenario import ci_runs  # noqa: PLC0415

    ids = [
        f"tests/smoke/test_smoke.py::test_scenario[{s}-{b}]"
        for s, b in ci_runs(ROOT / "tests/scenarios")
    ]
    assert EARLY_LAB in ids
