"""Boot answers from the logs serve already writes: dnsmasq's log-dhcp lines (DHCP/PXE,
TFTP) and nginx's access log (builder/nginx.py's `pxe` format).

Parsing is pure (a line in, an Event or None out; what the answer was is judged with the
night's clock, builder/night/answers.py). Following the files is one polling thread per
file, reading only what was appended since serve started.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from chaosnode.window import Night

from ..model import Cluster
from ..night.answers import answer_for
from .events import Event, Kind

# dnsmasq-dhcp[812]: 3853171512 PXE(br0) 10.99.0.11 52:54:00:99:00:11 undionly.kpxe
# dnsmasq-dhcp[812]: 1234 DHCPACK(br0) 10.99.0.11 52:54:00:99:00:11 node01
DNSMASQ: Final = re.compile(
    r"dnsmasq-dhcp(?:\[\d+\])?:\s+(?:\d+\s+)?(?P<what>DHCPACK|PXE)\((?P<ifname>[^)]+)\)\s+"
    r"(?:(?P<address>\d{1,3}(?:\.\d{1,3}){3})\s+)?(?P<mac>[0-9a-f]{2}(?::[0-9a-f]{2}){5})"
)
# 10.99.0.11 [2026-12-01T21:00:00+00:00] "GET /mac-52-54-00-99-00-11.ipxe HTTP/1.1" 200 ...
NGINX: Final = re.compile(
    r'^(?P<address>\S+) \[(?P<time>[^\]]+)\] "GET /(?P<path>\S*) HTTP/[\d.]+" (?P<status>\d{3}) '
)
MAC_FILE: Final = re.compile(r"^mac-(?P<mac>[0-9a-f]{2}(?:-[0-9a-f]{2}){5})\.ipxe$")
MAX_LINE: Final = 4096


def _answer(
    cluster: Cluster, night: Night | None, mac: str, address: str, t: dt.datetime, via: str
) -> Event:
    answer = answer_for(cluster, night, mac, t)
    what = "cluster" if answer.cluster_boot else "disk"
    return Event(t, Kind.BOOT, answer.node or "", answer.mac, address, f"{what} via {via}")


def dnsmasq_event(cluster: Cluster, night: Night | None, line: str, t: dt.datetime) -> Event | None:
    """A DHCP/PXE answer dnsmasq logged, at `t` (when the line was read: dnsmasq's stderr
    lines carry no date)."""
    m = DNSMASQ.search(line[:MAX_LINE])
    if m is None:
        return None
    return _answer(cluster, night, m["mac"], m["address"] or "", t, m["what"].lower())


def nginx_event(cluster: Cluster, night: Night | None, line: str) -> Event | None:
    """A per-MAC iPXE answer nginx served (200): the boot answer that machine got."""
    m = NGINX.match(line[:MAX_LINE])
    if m is None or m["status"] != "200":
        return None
    f = MAC_FILE.match(m["path"])
    if f is None:
        return None
    try:
        t = dt.datetime.fromisoformat(m["time"])
    except ValueError:
        return None
    return _answer(cluster, night, f["mac"].replace("-", ":"), m["address"], t, "http")


class Follower:
    """Follow one appended log file from its size now; each new whole line to `on_line`."""

    def __init__(self, path: Path, on_line: Callable[[str], None], every: float = 0.5) -> None:
        self.path, self.on_line, self.every = path, on_line, every
        self.offset = path.stat().st_size if path.exists() else 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"follow-{path.name}")

    def start(self) -> Follower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # what was written before the stop

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                if f.seek(0, 2) < self.offset:
                    self.offset = 0  # truncated: start over
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        for raw in data[:end].split(b"\n"):
            self.on_line(raw.decode("utf-8", "replace"))

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.poll()
