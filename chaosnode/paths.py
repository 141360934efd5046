"""Moved to chaosnode.contract.paths (the builder/node contract); this name stays so that the
branches in flight keep importing it. New code imports chaosnode.contract.paths."""

from chaosnode.contract.paths import *  # noqa: F403
from chaosnode.contract.paths import in_root  # noqa: F401 (not caught by the star for mypy)
