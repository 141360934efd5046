"""chaos-agent: answers a QEMU test host's commands over a virtio-serial port.

Only a hypervisor can create the port org.chaos.agent, so on a real lab machine this never
starts (systemd starts it when that device appears). One JSON request per line:
{"id": N, "argv": [...], "timeout": S}; one JSON reply per line: {"id", "rc", "out", "err"}.
No shell: argv is executed as given. Output is capped so a reply stays bounded.

    python3 -I -m chaosnode.agent
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

from chaosnode.paths import AGENT_PORT

MAX_REQUEST = 64 * 1024
MAX_OUTPUT = 256 * 1024


def answer(line: bytes) -> bytes:
    try:
        req = json.loads(line)
        argv = [str(a) for a in req["argv"]]
        timeout = float(req.get("timeout", 30))
        ident = req.get("id")
    except (ValueError, KeyError, TypeError) as exc:
        return json.dumps({"id": None, "rc": -1, "out": "", "err": f"bad request: {exc}"}).encode()
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout)
        rc, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = -9, exc.stdout or b"", b"timed out"
    except OSError as exc:
        rc, out, err = -2, b"", str(exc).encode()
    return json.dumps(
        {
            "id": ident,
            "rc": rc,
            "out": out[-MAX_OUTPUT:].decode(errors="replace"),
            "err": err[-MAX_OUTPUT:].decode(errors="replace"),
        }
    ).encode()


def main() -> None:
    fd = os.open(AGENT_PORT, os.O_RDWR | os.O_NONBLOCK)
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            chunk = b""
        if not chunk:  # host side not connected
            time.sleep(0.2)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            reply = answer(line) + b"\n"
            view = memoryview(reply)
            deadline = time.monotonic() + 30  # the host went away: drop the reply
            while view and time.monotonic() < deadline:
                select.select([], [fd], [], 1.0)
                try:
                    view = view[os.write(fd, view) :]
                except (BlockingIOError, ConnectionError):
                    time.sleep(0.1)
        if len(buf) > MAX_REQUEST:
            buf = b""


if __name__ == "__main__":
    main()
