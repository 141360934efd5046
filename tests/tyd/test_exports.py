"""Map exports and the status document: pure rendering, atomic writes."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from chaosnode.files import atomic_write
from tyd import exports, status
from tyd.member import Member, State
from tyd.membership import View


def row(addr: str, state: str = "alive", slots: int = 2, name: str | None = None) -> View:
    ip = ipaddress.IPv4Address(addr)
    m = Member(
        name or f"n{int(ip) & 0xFF}",
        ip,
        "ab" * 32,
        State.ALIVE if state in ("alive", "suspect") else State(state),
        7,
        3,
        slots,
    )
    return View(m, state, 1.25)


ROWS = [
    row("10.99.0.13"),
    row("10.99.0.11"),
    row("10.99.0.12", "suspect"),
    row("10.99.0.20", slots=8),
    row("10.99.0.21", "dead"),
    row("10.99.0.22"),
]


def test_mosix_map_groups_consecutive_addresses_of_usable_members() -> None:
    assert exports.render_mosix(ROWS) == (
        "1 10.99.0.11 1\n"  # .12 is suspect: no work
        "2 10.99.0.13 1\n"
        "3 10.99.0.20 1\n"  # .21 is dead
        "4 10.99.0.22 1\n"
    )
    assert exports.render_mosix([row("10.99.0.11"), row("10.99.0.12")]) == "1 10.99.0.11 2\n"
    assert exports.render_mosix([]) == ""


def test_hostfile_lists_usable_members_with_their_cpus() -> None:
    """A suspect member (silent, not yet removed) and the dead get no MPI ranks."""
    assert exports.render_hostfile(ROWS) == (
        "10.99.0.11 slots=2\n10.99.0.13 slots=2\n10.99.0.20 slots=8\n10.99.0.22 slots=2\n"
    )


def test_json_export_round_trips_into_known_contacts(tmp_path: Path) -> None:
    path = tmp_path / "run" / "map.json"
    atomic_write(path, exports.render_json("chaos-lab", "n11", 4, ROWS))
    doc = json.loads(path.read_text())
    assert doc["version"] == 4 and len(doc["members"]) == 5  # live only: the dead is not listed
    assert {m["state"] for m in doc["members"]} == {"alive", "suspect"}
    contacts = exports.known_contacts(path)
    assert ("n21", ipaddress.IPv4Address("10.99.0.21")) not in contacts  # dead: not a contact
    assert len(contacts) == 5
    assert [p.name for p in path.parent.iterdir()] == ["map.json"]  # no temp file left


def test_known_contacts_tolerates_garbage(tmp_path: Path) -> None:
    p = tmp_path / "map.json"
    for text in ("", "[]", '{"members": [{"name": 1}]}', '{"members": 3}'):
        p.write_text(text)
        assert exports.known_contacts(p) == []
    assert exports.known_contacts(tmp_path / "absent.json") == []


def test_status_renders_members_and_counters(tmp_path: Path) -> None:
    doc = status.document(
        "chaos-lab",
        "n11",
        "10.99.0.11",
        True,
        12.0,
        9,
        ROWS,
        {"refused": 2, "malformed": 1},
        now=1000.0,
    )
    path = tmp_path / "status.json"
    atomic_write(path, json.dumps(doc))
    text = status.render(status.read(path), now=1001.0)
    assert "Philip (member)" in text and "status written 1.0s ago" in text
    assert "n12              10.99.0.12      suspect" in text
    assert "refused=2" in text and "malformed=1" in text
