"""A machine nobody registered asks to enroll, for the README test:
python3 enroll_probe.py URL CA NODE ADDRESS WORKDIR.

Starts a software TPM on this namespace's loopback and runs the node's enrollment client
against serve for a few seconds: serve records the machine as pending and the client prints
its EK hash (`... not registered as NODE: TPM EK sha256:...`). Run inside the client's
namespace only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from builder.enroll.swtpm import free_ports, start_swtpm
from chaosnode import enroll


def main(url: str, ca: str, node: str, address: str, workdir: str) -> int:
    work = Path(workdir)
    with start_swtpm(work / "tpm", free_ports()) as tpm:
        return enroll.main(
            [
                "--url",
                url,
                "--ca",
                ca,
                "--node",
                node,
                "--address",
                address,
                "--tcti",
                tpm.tcti,
                "--max-time",
                "6",
                "--key-out",
                str(work / "node.key"),
                "--cert-out",
                str(work / "node.pem"),
            ]
        )


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
