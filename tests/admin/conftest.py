"""Fixtures of the admin tests (helpers: tests/admintest.py)."""

from __future__ import annotations

import pytest
from admintest import lab_cluster

from builder.model import Cluster


@pytest.fixture
def lab() -> Cluster:
    return lab_cluster()
