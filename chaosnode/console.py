"""One line on every active console (serial and screen) and on stdout (the journal)."""

from __future__ import annotations

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
