"""Smoke scenarios are data (tests/scenarios/NAME/scenario.yaml), in the style of
strongSwan's testing/ suite: on which node, which command, which pattern, expected or not.

A scenario file is read like chaos.yaml: every problem is reported with file:line: field,
all at once, before anything is built. `fit()` then checks the scenario against the cluster
file it will run with (its own, or the admin's `-c chaos.yaml`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import ConfigError, Problem
from builder.head.model import HeadModel
from builder.loader import Document, Path_, dotted, load_file
from builder.model import Cluster

# {peer}: once per other member; {rogue}: the rogue's address; {rogue_name}: its node name;
# {NODE}: the address of a booted member; {marker}: a wire check's marker.
FIXED_PLACEHOLDERS = ("peer", "rogue", "rogue_name", "marker")
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_-]*)\}")
SPARE = "spare"
# how a lab boots its members (chaos-build smoke --boot; a scenario's ci.boot)
BOOTS = ("pxe", "iso")


@dataclass(frozen=True)
class Check:
    title: str
    on: str  # a node name, "members" or "rogue"
    run: tuple[str, ...]  # may use the placeholders above
    pattern: str
    expect: bool
    within: float
    # only for a rogue of this kind ("impersonating" a spare node, or a "stranger"): what
    # serve and the members can show differs between the two; "" for any rogue
    rogue_as: str = ""


# the kinds of rogue a check may be limited to, and why the other kind leaves it out
ROGUE_KINDS = {
    "impersonating": "the rogue impersonates no spare node: the cluster file has none to spare",
    "stranger": "the rogue impersonates a spare node, not a stranger",
}


@dataclass(frozen=True)
class WireCheck:
    title: str
    sender: str
    receiver: str
    proto: str
    port: int
    clear: bool  # the marker must (True) or must never (False) be seen in clear on the bridge
    # a command on `from` whose traffic to `to` carries {marker} (e.g. a Slurm job's output),
    # instead of chaosnode.probe on proto/port; its output must show the marker
    run: tuple[str, ...] = ()


# the admin's view (builder/smoke/admin_checks.py): what `chaos-build status --json`,
# /metrics and the page in headless Chromium must show, and that no guest reaches the admin
# port; after the lab formed, or after the night's morning
ADMIN_KINDS = ("status", "metrics", "page", "unreachable")
ADMIN_WHEN = ("formed", "morning")
STATES = ("down", "woken", "booted", "enrolled", "joined", "running", "left", "disk")


@dataclass(frozen=True)
class AdminCheck:
    title: str
    kind: str
    when: str = "formed"
    states: tuple[str, ...] = ("joined",)  # status: what every member may show
    rogue: str = ""  # status: a pattern the impersonated node's reason must match
    left: str = ""  # status: every member's record says it left, why this (morning)
    node: str = ""  # unreachable: the guest that tries the admin port
    within: float = 0.0


@dataclass(frozen=True)
class Rogue:
    # a node of the cluster that is never booted (a spare lab machine), "spare" for any such
    # node, or "" for a stranger at a free address
    impersonates: str


FIRMWARES = ("bios", "secure-boot")


@dataclass(frozen=True)
class SecureBootLab:
    """Every VM boots real UEFI firmware with Secure Boot enforced (builder/smoke/firmware.py);
    after the members, two registered machines that must get nothing: one boots a node
    initrd this build did not make, one boots with Secure Boot off."""

    tampered: str
    secure_boot_off: str


@dataclass(frozen=True)
class RogueDhcpLab:
    """A laptop on the lab segment (builder/smoke/roguedhcp.py) runs its own DHCP/TFTP
    server, copies the build's signed boot chain from serve over TFTP and answers `victim`
    (a registered node) with the attacker's initrd. A victim the scenario does not boot is
    answered after the members are up; a booted one (not the first, not a head) at its first
    power-on, and it boots again, genuinely, once the laptop has left."""

    victim: str


@dataclass(frozen=True)
class Night:
    """One night of a day-and-night lab: it starts `starts_after` seconds after the build (at
    the next whole minute) and lasts `minutes`."""

    starts_after: float
    minutes: int


@dataclass(frozen=True)
class DayAndNight:
    """The always-on head's lab (builder/smoke/dayandnight.py): `head` boots by day with a
    blank state disk, `user` (its ssh key made by the lab) works from the campus namespace,
    `keyless` is a user with no key; the other booted nodes are lab PCs of two nights."""

    head: str
    user: str
    keyless: str
    campus: str  # the user's address (inside login_from), in the campus namespace
    outsider: str  # an address of the same campus outside login_from
    nights: tuple[Night, Night]
    array: int = 20


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    config: Path
    boot: tuple[str, ...]
    checks: tuple[Check, ...]
    wire: tuple[WireCheck, ...]
    rogue: Rogue | None
    remove: str | None
    remove_within: float
    includes: tuple[str, ...] = ()  # the focused scenarios this lab also runs
    # the night: the lab's schedule ends this many seconds after the build (None: no
    # schedule); members then leave, reboot and must boot their own disk (the day OS)
    night_ends_after: float | None = None
    after: tuple[Check, ...] = ()  # checks run after the power-off of `remove`
    admin: tuple[AdminCheck, ...] = ()
    secure_boot: SecureBootLab | None = None
    rogue_dhcp: RogueDhcpLab | None = None
    # how CI's smoke tier boots this lab (`ci: {boot: pxe}`); None: CI does not run it
    ci_boot: str | None = None
    day_and_night: DayAndNight | None = None
    # the lab PCs' firmware: "bios" (SeaBIOS) or "secure-boot" (OVMF, Secure Boot enforced);
    # a `secure_boot:` lab is always secure-boot
    firmware: str = "bios"
    file: str = ""
    lines: dict[Path_, int] = field(default_factory=dict, compare=False, repr=False)


class _Reader:
    """Typed access to one scenario document, collecting problems instead of raising."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def problem(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.doc.file, self.doc.line(path), dotted(path), message))

    def mapping(self, value: Any, path: Path_, keys: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(path, "expected a mapping")
            return {}
        for key in sorted(set(value) - keys):
            self.problem((*path, key), f"unknown key; known: {', '.join(sorted(keys))}")
        return value

    def get(
        self,
        raw: dict[str, Any],
        path: Path_,
        key: str,
        kind: type,
        default: Any = None,
        required: bool = False,
    ) -> Any:
        if key not in raw:
            if required:
                self.problem(path, f"missing {key!r}")
            return default
        value = raw[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            self.problem((*path, key), f"expected {kind.__name__}, got {value!r}")
            return default
        return value

    def text(
        self, raw: dict[str, Any], path: Path_, key: str, required: bool = False, default: str = ""
    ) -> str:
        if key in raw and isinstance(raw[key], (int, float)) and not isinstance(raw[key], bool):
            return self.doc.texts.get((*path, key), str(raw[key]))
        return str(self.get(raw, path, key, str, default, required))

    def items(self, raw: dict[str, Any], key: str) -> list[Any]:
        value = raw.get(key, [])
        if not isinstance(value, list):
            self.problem((key,), "expected a list")
            return []
        return value


def _check(r: _Reader, raw: Any, i: int, key: str = "checks") -> Check:
    at: Path_ = (key, i)
    c = r.mapping(raw, at, {"title", "node", "run", "pattern", "expect", "within", "rogue_as"})
    pattern = r.text(c, at, "pattern", required=True)
    try:
        re.compile(PLACEHOLDER.sub("x", pattern))
    except re.error as exc:
        r.problem((*at, "pattern"), f"not a regular expression: {exc}")
    run = r.get(c, at, "run", list, [], required=True)
    if not run:
        r.problem((*at, "run"), "give the command as a non-empty list of arguments")
    within = r.get(c, at, "within", float, 0.0)
    if within < 0 or within > 900:
        r.problem((*at, "within"), f"{within} is outside 0..900 seconds")
    rogue_as = r.text(c, at, "rogue_as")
    if rogue_as and rogue_as not in ROGUE_KINDS:
        r.problem(
            (*at, "rogue_as"),
            f"{rogue_as!r}: use {' or '.join(ROGUE_KINDS)} (or leave it out for any rogue)",
        )
    return Check(
        r.text(c, at, "title", default=pattern),
        r.text(c, at, "node", required=True),
        tuple(r.doc.texts.get((*at, "run", j), str(a)) for j, a in enumerate(run)),
        pattern,
        bool(r.get(c, at, "expect", bool, True)),
        within,
        rogue_as,
    )


def _wire(r: _Reader, raw: Any, i: int) -> WireCheck:
    at: Path_ = ("wire", i)
    w = r.mapping(raw, at, {"title", "from", "to", "proto", "port", "clear", "run"})
    run = r.get(w, at, "run", list, [])
    if "run" in w and not any("{marker}" in str(a) for a in run):
        r.problem((*at, "run"), "the command must carry {marker} (what is looked for on the wire)")
    proto = r.text(w, at, "proto", required=not run, default="tcp")
    if proto not in ("tcp", "udp"):
        r.problem((*at, "proto"), f"{proto!r}: use tcp or udp")
    port = r.get(w, at, "port", int, 0 if run else 1, required=not run)
    if not run and not 1 <= port <= 65535:
        r.problem((*at, "port"), f"{port} is outside 1..65535")
    return WireCheck(
        r.text(w, at, "title", required=True),
        r.text(w, at, "from", required=True),
        r.text(w, at, "to", required=True),
        proto,
        port,
        bool(r.get(w, at, "clear", bool, False, required=True)),
        tuple(r.doc.texts.get((*at, "run", j), str(a)) for j, a in enumerate(run)),
    )


def _admin(r: _Reader, raw: Any, i: int) -> AdminCheck:
    at: Path_ = ("admin", i)
    a = r.mapping(raw, at, {"title", "kind", "when", "states", "rogue", "left", "node", "within"})
    kind = r.text(a, at, "kind", required=True)
    if kind and kind not in ADMIN_KINDS:
        r.problem((*at, "kind"), f"{kind!r}: use one of {', '.join(ADMIN_KINDS)}")
    when = r.text(a, at, "when", default="formed")
    if when not in ADMIN_WHEN:
        r.problem((*at, "when"), f"{when!r}: use {' or '.join(ADMIN_WHEN)}")
    states = tuple(str(x) for x in r.get(a, at, "states", list, ["joined"]))
    for j, state in enumerate(states):
        if state not in STATES:
            r.problem(
                (*at, "states", j),
                f"{state!r} is no state of `chaos-build status` ({', '.join(STATES)})",
            )
    rogue = r.text(a, at, "rogue")
    try:
        re.compile(rogue)
    except re.error as exc:
        r.problem((*at, "rogue"), f"not a regular expression: {exc}")
    node = r.text(a, at, "node", required=kind == "unreachable")
    within = r.get(a, at, "within", float, 0.0)
    if not 0 <= within <= 900:
        r.problem((*at, "within"), f"{within} is outside 0..900 seconds")
    return AdminCheck(
        r.text(a, at, "title", required=True),
        kind,
        when,
        states,
        rogue,
        r.text(a, at, "left"),
        node,
        within,
    )


def _day_and_night(r: _Reader, raw: Any) -> DayAndNight:
    at: Path_ = ("day_and_night",)
    d = r.mapping(
        raw or {}, at, {"head", "user", "keyless", "campus", "outsider", "nights", "array"}
    )
    nights = []
    for i, item in enumerate(r.get(d, at, "nights", list, [], required=True)):
        n = r.mapping(item, (*at, "nights", i), {"starts_after", "minutes"})
        starts = r.get(n, (*at, "nights", i), "starts_after", float, 0.0, required=True)
        minutes = r.get(n, (*at, "nights", i), "minutes", int, 0, required=True)
        if not 60 <= starts <= 7200:
            r.problem((*at, "nights", i, "starts_after"), f"{starts:g} is outside 60..7200 s")
        if not 3 <= minutes <= 60:
            r.problem((*at, "nights", i, "minutes"), f"{minutes} is outside 3..60 minutes")
        nights.append(Night(starts, minutes))
    if len(nights) != 2:
        r.problem((*at, "nights"), f"give two nights (the first and the second), not {len(nights)}")
        nights = [Night(60, 3), Night(600, 3)]
    elif nights[1].starts_after < nights[0].starts_after + nights[0].minutes * 60 + 120:
        r.problem(
            (*at, "nights", 1, "starts_after"),
            "the second night starts at least two minutes after the first one ends",
        )
    array = r.get(d, at, "array", int, 20)
    if not 1 <= array <= 1000:
        r.problem((*at, "array"), f"{array} is outside 1..1000 tasks")
    return DayAndNight(
        head=r.text(d, at, "head", required=True),
        user=r.text(d, at, "user", required=True),
        keyless=r.text(d, at, "keyless", required=True),
        campus=r.text(d, at, "campus", required=True),
        outsider=r.text(d, at, "outsider", required=True),
        nights=(nights[0], nights[1]),
        array=array,
    )


def _references(r: _Reader, scenario: Scenario) -> None:
    """Every node a check or wire check names is booted (or the rogue); placeholders known."""
    booted = set(scenario.boot)
    targets = booted | {"members"} | ({"rogue"} if scenario.rogue else set())
    for key, i, c in [
        *(("checks", i, c) for i, c in enumerate(scenario.checks)),
        *(("after", i, c) for i, c in enumerate(scenario.after)),
    ]:
        if c.on not in targets:
            r.problem(
                (key, i, "node"),
                f"{c.on!r} is not booted by this scenario; use one of {', '.join(sorted(targets))}",
            )
        if c.rogue_as and scenario.rogue is None:
            r.problem((key, i, "rogue_as"), "the scenario has no rogue")
        for text in (*c.run, c.pattern, c.title):
            for name in PLACEHOLDER.findall(text):
                if name in ("rogue", "rogue_name") and scenario.rogue is None:
                    r.problem((key, i), f"{{{name}}} used, but the scenario has no rogue")
                elif name not in FIXED_PLACEHOLDERS and name not in booted:
                    r.problem(
                        (key, i),
                        f"{{{name}}} is neither a booted node nor one of "
                        f"{', '.join('{' + p + '}' for p in FIXED_PLACEHOLDERS)}",
                    )
    for i, w in enumerate(scenario.wire):
        for key, name in (("from", w.sender), ("to", w.receiver)):
            if name not in booted:
                r.problem(("wire", i, key), f"{name!r} is not booted by this scenario")
    if scenario.remove is not None and scenario.remove not in booted:
        r.problem(("remove", "node"), f"{scenario.remove!r} is not booted by this scenario")
    for i, a in enumerate(scenario.admin):
        if a.node and a.node not in booted:
            r.problem(("admin", i, "node"), f"{a.node!r} is not booted by this scenario")
        if a.when == "morning" and scenario.night_ends_after is None and not scenario.day_and_night:
            r.problem(("admin", i, "when"), "a check after the morning needs `night:`")
    if scenario.after and scenario.remove is None:
        r.problem(("after",), "checks after a power-off need `remove: {node: ...}`")


def load_scenario(path: Path, _seen: tuple[Path, ...] = ()) -> Scenario:
    """One scenario file; `include:` adds the checks of focused scenarios (each a folder of
    its own, runnable alone) to this one's lab, so one boot serves several of them."""
    doc = load_file(path)
    r = _Reader(doc)
    raw = r.mapping(
        doc.data if doc.data is not None else {},
        (),
        {
            "description",
            "config",
            "boot",
            "rogue",
            "checks",
            "wire",
            "remove",
            "after",
            "include",
            "night",
            "admin",
            "secure_boot",
            "rogue_dhcp",
            "ci",
            "day_and_night",
            "firmware",
        },
    )
    boot = r.get(raw, (), "boot", list, [], required=True)
    if raw and not boot:
        r.problem(("boot",), "name at least one node to boot")
    rogue = None
    if "rogue" in raw:
        rg = r.mapping(raw["rogue"] or {}, ("rogue",), {"impersonates"})
        rogue = Rogue(r.text(rg, ("rogue",), "impersonates"))
    remove = r.mapping(raw.get("remove") or {}, ("remove",), {"node", "within"})
    night = None
    if "night" in raw:
        nt = r.mapping(raw["night"] or {}, ("night",), {"ends_after"})
        night = r.get(nt, ("night",), "ends_after", float, 0.0, required=True)
        if not 120 <= night <= 3600:
            r.problem(("night", "ends_after"), f"{night:g} is outside 120..3600 seconds")
    secure_boot = None
    if "secure_boot" in raw:
        sb = r.mapping(raw["secure_boot"] or {}, ("secure_boot",), {"tampered", "secure_boot_off"})
        secure_boot = SecureBootLab(
            r.text(sb, ("secure_boot",), "tampered", required=True),
            r.text(sb, ("secure_boot",), "secure_boot_off", required=True),
        )
    rogue_dhcp = None
    if "rogue_dhcp" in raw:
        rd = r.mapping(raw["rogue_dhcp"] or {}, ("rogue_dhcp",), {"victim"})
        rogue_dhcp = RogueDhcpLab(r.text(rd, ("rogue_dhcp",), "victim", required=True))
    ci_boot = None
    if "ci" in raw:
        ci = r.mapping(raw["ci"] or {}, ("ci",), {"boot"})
        ci_boot = r.text(ci, ("ci",), "boot", required=True)
        if ci_boot not in BOOTS:
            r.problem(("ci", "boot"), f"{ci_boot!r} is not one of {', '.join(BOOTS)}")
    day_and_night = _day_and_night(r, raw["day_and_night"]) if "day_and_night" in raw else None
    if day_and_night is not None and night is not None:
        r.problem(("night",), "a day-and-night lab sets its nights in day_and_night.nights")
    # the measured-boot labs (secure_boot:, rogue_dhcp:) boot the Secure Boot chain
    measured = "secure_boot" if secure_boot else "rogue_dhcp" if rogue_dhcp else ""
    firmware = r.text(raw, (), "firmware", default="secure-boot" if measured else "bios")
    if firmware not in FIRMWARES or (measured and firmware != "secure-boot"):
        r.problem(
            ("firmware",),
            f"{firmware!r}: one of {', '.join(FIRMWARES)}"
            + (f" (a {measured}: lab is secure-boot)" if measured else ""),
        )
    scenario = Scenario(
        name=path.parent.name,
        description=r.text(raw, (), "description", required=True),
        config=path.parent / r.text(raw, (), "config", default="chaos.yaml"),
        boot=tuple(str(n) for n in boot),
        checks=tuple(_check(r, c, i) for i, c in enumerate(r.items(raw, "checks"))),
        wire=tuple(_wire(r, w, i) for i, w in enumerate(r.items(raw, "wire"))),
        rogue=rogue,
        remove=r.text(remove, ("remove",), "node") or None,
        remove_within=r.get(remove, ("remove",), "within", float, 60.0),
        night_ends_after=night,
        after=tuple(_check(r, c, i, "after") for i, c in enumerate(r.items(raw, "after"))),
        admin=tuple(_admin(r, a, i) for i, a in enumerate(r.items(raw, "admin"))),
        secure_boot=secure_boot,
        rogue_dhcp=rogue_dhcp,
        ci_boot=ci_boot,
        day_and_night=day_and_night,
        firmware=firmware,
        file=doc.file,
        lines=dict(doc.lines),
    )
    for i, item in enumerate(r.items(raw, "include")):
        scenario = _include(r, scenario, path, str(item), i, (*_seen, path.resolve()))
    _references(r, scenario)
    if r.problems:
        raise ConfigError(r.problems)
    return scenario


def ci_runs(folder: Path) -> tuple[tuple[str, str], ...]:
    """The smoke runs CI makes, (scenario folder, boot), by folder name: every scenario under
    `folder` whose file says `ci: {boot: ...}`. Each file is loaded, so a broken one is a
    ConfigError here, before any lab."""
    runs = []
    for path in sorted(folder.glob("*/scenario.yaml")):
        boot = load_scenario(path).ci_boot
        if boot is not None:
            runs.append((path.parent.name, boot))
    return tuple(runs)


def _include(
    r: _Reader, scenario: Scenario, path: Path, rel: str, i: int, seen: tuple[Path, ...]
) -> Scenario:
    """This scenario with the checks, wire checks, rogue and removal of an included one, which
    must boot no node this one does not."""
    other_path = (path.parent / rel).resolve()
    if other_path in seen:
        r.problem(("include", i), f"{rel} includes itself (through {seen[-1]})")
        return scenario
    if not other_path.is_file():
        r.problem(("include", i), f"{rel}: no such scenario file")
        return scenario
    try:
        other = load_scenario(other_path, seen)
    except ConfigError as exc:
        r.problems.extend(exc.problems)
        return scenario
    extra = sorted(set(other.boot) - set(scenario.boot))
    if extra:
        r.problem(
            ("include", i),
            f"{rel} boots {', '.join(extra)}, which this scenario does not; add them to boot",
        )
    if scenario.rogue and other.rogue and scenario.rogue != other.rogue:
        r.problem(("include", i), f"{rel} has another rogue; a lab has one")
    return dataclasses.replace(
        scenario,
        checks=(*scenario.checks, *other.checks),
        wire=(*scenario.wire, *other.wire),
        rogue=scenario.rogue or other.rogue,
        remove=scenario.remove or other.remove,
        remove_within=scenario.remove_within if scenario.remove else other.remove_within,
        after=(*scenario.after, *other.after),
        admin=(*scenario.admin, *other.admin),
        includes=(*scenario.includes, other.name, *other.includes),
    )


def fit(scenario: Scenario, cluster: Cluster, config: Path) -> None:
    """Refuse, before anything is built, a scenario that the cluster file cannot run."""
    names = [n.name for n in cluster.nodes]
    problems = []

    def problem(path: Path_, message: str) -> None:
        line = scenario.lines.get(path) or scenario.lines.get(path[:1])
        problems.append(Problem(scenario.file, line, dotted(path), message))

    for i, name in enumerate(scenario.boot):
        if name not in names:
            problem(("boot", i), f"{name} is not a node of {config} (nodes: {', '.join(names)})")
    if scenario.rogue is not None and scenario.rogue.impersonates not in ("", SPARE):
        name = scenario.rogue.impersonates
        if name not in names:
            problem(
                ("rogue", "impersonates"),
                f"{name} is not a node of {config}; use "
                f"`{SPARE}` (a node the scenario does not boot, else a stranger at a free "
                "address) or leave it empty (a stranger)",
            )
        elif name in scenario.boot:
            problem(
                ("rogue", "impersonates"),
                f"{name} is booted by this scenario; the rogue "
                "must impersonate a node that is not (a spare lab machine)",
            )
    # the measured-boot negatives are registered machines that are no member and no rogue
    negatives: list[tuple[Path_, str]] = []
    if scenario.secure_boot is not None:
        negatives += [
            (("secure_boot", key), getattr(scenario.secure_boot, key))
            for key in ("tampered", "secure_boot_off")
        ]
    victim = scenario.rogue_dhcp.victim if scenario.rogue_dhcp is not None else ""
    if victim in scenario.boot:  # a member whose first power-on meets the rogue
        heads = [n.name for n in cluster.heads]
        if victim == scenario.boot[0] or victim in heads:
            problem(
                ("rogue_dhcp", "victim"),
                f"{victim} is booted first or is a head: a booted victim needs members up "
                f"before it to watch it (boot it after {scenario.boot[0]}, not a head)",
            )
    elif victim:
        negatives.append((("rogue_dhcp", "victim"), victim))
    for path, name in negatives:
        if name not in names or name in scenario.boot or name == spare_node(scenario, cluster):
            problem(
                path,
                f"{name} must be a node of {config} that the scenario does not boot as a "
                "member (and no rogue impersonates)",
            )
    if scenario.day_and_night is not None:
        problems.extend(_fit_day_and_night(scenario, scenario.day_and_night, cluster, config))
    if problems:
        raise ConfigError(problems)


def _fit_day_and_night(
    scenario: Scenario, dn: DayAndNight, cluster: Cluster, config: Path
) -> list[Problem]:
    """The head is the cluster's always-on head and booted; the users are declared; the
    campus address is inside login_from and the outsider's is not."""
    out = []

    def problem(key: str, message: str) -> None:
        path: Path_ = ("day_and_night", key)
        line = scenario.lines.get(path) or scenario.lines.get(path[:1])
        out.append(Problem(scenario.file, line, dotted(path), message))

    head = cluster.always_on_head
    if head is None or head.name != dn.head:
        problem("head", f"{dn.head} is not the always-on head of {config}")
    if dn.head not in scenario.boot:
        problem("head", f"{dn.head} is not booted by this scenario; add it to boot")
    users = {u.name: u for u in cluster.section(HeadModel).users}
    if dn.user not in users:
        problem("user", f"{dn.user} is not a user of {config}")
    if dn.keyless not in users or users[dn.keyless].ssh_keys or dn.keyless == dn.user:
        problem(
            "keyless", f"{dn.keyless} must be a user of {config} without ssh_keys, not {dn.user}"
        )
    for key, address, inside in (("campus", dn.campus, True), ("outsider", dn.outsider, False)):
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            problem(key, f"{address!r} is not an IPv4 address")
            continue
        if any(ip in net for net in cluster.section(HeadModel).login_from) != inside:
            problem(key, f"{address} must be {'inside' if inside else 'outside'} login_from")
        if ip in cluster.network.subnet:
            problem(key, f"{address} is on the lab segment {cluster.network.subnet}")
    return out


def spare_node(scenario: Scenario, cluster: Cluster) -> str:
    """The node the rogue impersonates: the named one, the last unbooted one for `spare`,
    or "" (a stranger) when the cluster has none to spare."""
    if scenario.rogue is None:
        return ""
    if scenario.rogue.impersonates != SPARE:
        return scenario.rogue.impersonates
    spare = [n.name for n in cluster.nodes if n.name not in scenario.boot]
    return spare[-1] if spare else ""
