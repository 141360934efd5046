"""What dnsmasq answered each MAC, read from its own log (`log-dhcp`): the smoke lab's
evidence that by day a member gets an address and no boot file."""

from __future__ import annotations

import re
from dataclasses import dataclass

# dnsmasq-dhcp[PID]: XID WHAT: VALUE, or XID DHCPOFFER(IFACE) ADDRESS MAC
LINE = re.compile(r"dnsmasq-dhcp\[\d+\]: (\d+) (.*)$")
ANSWER = re.compile(r"DHCP(?:OFFER|ACK)\(\S+\) (?:\S+ )?([0-9a-f:]{17})")


@dataclass(frozen=True)
class DhcpAnswer:
    xid: str
    mac: str
    tags: tuple[str, ...]
    bootfile: str | None  # None: the answer named no boot file


def dhcp_answers(log: str) -> list[DhcpAnswer]:
    """Every OFFER/ACK dnsmasq logged, in order, with the tags and boot file of its
    transaction."""
    tags: dict[str, tuple[str, ...]] = {}
    boot: dict[str, str] = {}
    answered: list[tuple[str, str]] = []
    for line in log.splitlines():
        if (match := LINE.search(line)) is None:
            continue
        xid, text = match.groups()
        if text.startswith("tags: "):
            tags[xid] = tuple(t.strip() for t in text[6:].split(","))
        elif text.startswith("bootfile name: "):
            boot[xid] = text[15:].strip()
        elif found := ANSWER.match(text):
            answered.append((xid, found.group(1)))
    # dnsmasq logs the boot file after the OFFER line: read the transaction whole
    return [DhcpAnswer(xid, mac, tags.get(xid, ()), boot.get(xid)) for xid, mac in answered]


def last_answer(log: str, mac: str) -> DhcpAnswer | None:
    mine = [a for a in dhcp_answers(log) if a.mac == mac.lower()]
    return mine[-1] if mine else None
