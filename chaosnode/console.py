"""Lines for the person watching. `say`: one line on stderr (the journal, the admin's
terminal), the one way every chaos program (builder and node) talks; `console`: one line on
every active console (serial and screen) as well, for what a node must show at boot."""

from __future__ import annotations

import sys
from pathlib import Path

ACTIVE_CONSOLES = Path("/sys/class/tty/console/active")


def console(message: str, active: Path = ACTIVE_CONSOLES, dev: Path = Path("/dev")) -> None:
    try:
        names = active.read_text().split()
    except OSError:
        names = []
    for name in names or ["console"]:
        try:
            with open(dev / name, "w") as tty:
                tty.write(f"\r\n{message}\r\n")
        except OSError:
            pass
    print(message, flush=True)


def say(message: str, program: str = "") -> None:
    """Flushed at once, so each step shows when it happens; with the program's name where
    several programs share the journal or console."""
    print(f"{program}: {message}" if program else message, file=sys.stderr, flush=True)
