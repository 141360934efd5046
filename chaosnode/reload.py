"""Tell the running daemons that this node's credentials changed on disk, without tearing
anything down (the CRL refresh and the certificate renewal both use it).

- charon: `swanctl --load-creds` loads the new certificate, key and CRL through VICI and
  unloads a private key whose file is gone. IKE_SAs and CHILD_SAs stay up; a new IKE_SA
  signs with the new key (charon falls back from a connection's configured certificate
  without a key to a loaded one for the same identity that has one).
- tyd: SIGHUP makes it rebuild its TLS contexts from the certificate and key files.

Each returns None, or one line saying what went wrong (the caller logs it).
"""

from __future__ import annotations

import subprocess
from typing import Final

TIMEOUT: Final = 60
TYD_UNIT: Final = "tyd.service"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str] | str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"


def charon_creds() -> str | None:
    r = _run(["swanctl", "--load-creds", "--noprompt"])
    if isinstance(r, str):
        return r
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"swanctl --load-creds failed (exit {r.returncode}): {tail[0]}"
    return None


def tyd(unit: str = TYD_UNIT) -> str | None:
    active = _run(["systemctl", "is-active", "--quiet", unit])
    if isinstance(active, str):
        return active
    if active.returncode != 0:
        return f"{unit} is not running: nothing to reload"
    r = _run(["systemctl", "kill", "--kill-whom=main", "--signal=SIGHUP", unit])
    if isinstance(r, str):
        return r
    if r.returncode != 0:
        return f"cannot send SIGHUP to {unit}: {r.stderr.strip()}"
    return None
