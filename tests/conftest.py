"""Fixtures shared by every tier (helpers live in chaostest.py)."""

from chaostest import default_cluster, workdir  # noqa: F401
