"""A software TPM 2.0 (swtpm) on loopback, for tests, benches and QEMU-less labs.

Started through `start_swtpm`, which logs the command and waits until the TPM answers;
`SoftTpm.stop()` (or leaving the `with` block) always reaps it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from chaosnode.tpm import Tpm
from chaosnode.tpmpub import ek_hash

from ..errors import ToolMissing
from ..run import spawn, stop_processes, which


@dataclass
class SoftTpm:
    port: int
    state: Path
    proc: subprocess.Popen[bytes]

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def ek_hash(self) -> str:
        """The hash of this TPM's endorsement key (transient keys only), as the service
        registers it."""
        with Tpm(self.tcti) as tpm, tpm.keys() as keys:
            return ek_hash(keys.attestation.ek_public)

    def stop(self) -> None:
        stop_processes([self.proc], timeout=5)

    def __enter__(self) -> SoftTpm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_swtpm(state: Path, port: int, timeout: float = 5.0) -> SoftTpm:
    """swtpm on 127.0.0.1:port (TPM commands) and port+1 (control), state in `state`."""
    binary = which("swtpm")
    if binary is None:
        raise ToolMissing("swtpm is needed for a software TPM: apt-get install swtpm")
    state.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "socket",
        "--tpm2",
        "--server",
        f"type=tcp,port={port},bindaddr=127.0.0.1",
        "--ctrl",
        f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
        "--flags",
        "not-need-init,startup-clear",
        "--tpmstate",
        f"dir={state}",
    ]
    proc = spawn(argv)
    tpm = SoftTpm(port, state, proc)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ToolMissing(f"swtpm exited with {proc.returncode} at start (port {port} taken?)")
        try:
            # the control channel: probing it leaves the single TPM command channel free
            with socket.create_connection(("127.0.0.1", port + 1), timeout=0.2):
                return tpm
        except OSError:
            if time.monotonic() > deadline:
                tpm.stop()
                raise ToolMissing(
                    f"swtpm did not listen on 127.0.0.1:{port + 1} within {timeout:g} s"
                ) from None
            time.sleep(0.02)


def free_ports(count: int = 2) -> int:
    """A port p with p..p+count-1 free on loopback (racy, good enough for tests)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base: int = s.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for i in range(1, count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
    raise OSError("no free loopback ports")
