"""The one subprocess helper: failures are typed errors, stragglers are stopped and reaped."""

from __future__ import annotations

import subprocess
import sys

import pytest

from builder.errors import BuildError
from builder.run import run, stop_processes


def test_failure_names_the_command_and_its_stderr() -> None:
    with pytest.raises(BuildError, match=r"exit code 3: .*boom"):
        run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    assert run([sys.executable, "-c", "raise SystemExit(3)"], check=False).returncode == 3


def test_stop_processes_ends_and_reaps_even_those_ignoring_sigterm() -> None:
    polite = subprocess.Popen(["sleep", "60"])
    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print(flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    assert stubborn.stdout is not None and stubborn.stdout.readline()  # handler installed
    stop_processes([polite, stubborn], timeout=1)
    assert polite.returncode == -15
    assert stubborn.returncode == -9
