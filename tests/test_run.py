"""The one subprocess helper: failures are typed errors, stragglers are stopped and reaped."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from builder.errors import BuildError, ChaosError
from builder.run import process_failure, run, spawn, stop_processes, supervised


def test_failure_names_the_command_and_its_stderr() -> None:
    with pytest.raises(BuildError, match=r"exit code 3: .*boom"):
        run([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    assert run([sys.executable, "-c", "raise SystemExit(3)"], check=False).returncode == 3


def test_stop_processes_ends_and_reaps_even_those_ignoring_sigterm() -> None:
    polite = subprocess.Popen(["sleep", "60"])
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); print(flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline()  # handler installed
    stop_processes([polite, stubborn], timeout=1)
    assert polite.returncode == -15
    assert stubborn.returncode == -9


def test_supervised_child_logs_to_its_file_and_is_reaped_however_the_block_ends(tmp_path):
    log = tmp_path / "child.log"
    with (
        pytest.raises(RuntimeError),
        supervised(
            [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
            log_file=log,
        ) as proc,
    ):
        for _ in range(100):
            if log.exists() and log.read_text():
                break
            time.sleep(0.05)
        raise RuntimeError("the block failed")
    assert proc.returncode is not None, "the child must be reaped"
    assert log.read_text() == "up\n"


def test_process_failure_names_the_child_its_code_and_its_log_tail(tmp_path):
    log = tmp_path / "dnsmasq.log"
    proc = spawn(
        [sys.executable, "-c", "import sys; print('bind failed'); sys.exit(2)"], log_file=log
    )
    proc.wait(10)
    err = process_failure(proc, "dnsmasq", log)
    assert isinstance(err, ChaosError)
    assert "dnsmasq exited with code 2" in str(err) and "bind failed" in str(err)
