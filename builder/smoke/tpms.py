"""Every VM of the smoke lab has a TPM 2.0 of its own: a swtpm whose state lives in the
VM's results folder. Before QEMU starts, the lab reads each TPM's EK (on loopback, transient
keys only) so it can register the members' EK hashes and leave the rogue's out."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from builder.enroll.swtpm import free_ports, start_swtpm
from builder.errors import ChaosError
from builder.run import spawn

SOCKET_WAIT = 10.0


def ek_hash_of(state: Path) -> str:
    """Manufacture the TPM in `state` (first start) and return its EK hash."""
    with start_swtpm(state, free_ports(2)) as tpm:
        return tpm.ek_hash()


def spawn_for_qemu(state: Path, socket_path: Path, log: Path) -> subprocess.Popen[bytes]:
    """swtpm serving one QEMU over a unix socket; it ends when QEMU disconnects."""
    state.mkdir(parents=True, exist_ok=True)  # a TPM nobody read yet is manufactured here
    socket_path.unlink(missing_ok=True)
    proc = spawn(
        [
            "swtpm",
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state}",
            "--ctrl",
            f"type=unixio,path={socket_path}",
            "--terminate",
        ],
        log_file=log,
    )
    deadline = time.monotonic() + SOCKET_WAIT
    while not socket_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise ChaosError(f"swtpm for {state} did not start; see {log}")
        time.sleep(0.05)
    return proc


def qemu_args(socket_path: Path) -> list[str]:
    """The QEMU arguments for a TIS TPM 2.0 backed by the swtpm at socket_path."""
    return [
        "-chardev",
        f"socket,id=chrtpm,path={socket_path}",
        "-tpmdev",
        "emulator,id=tpm0,chardev=chrtpm",
        "-device",
        "tpm-tis,tpmdev=tpm0",
    ]
