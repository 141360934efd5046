"""Smoke scenarios are data (tests/scenarios/NAME/scenario.yaml), in the style of
strongSwan's testing/ suite: on which node, which command, which pattern, expected or not."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from builder.errors import ChaosError


@dataclass(frozen=True)
class Check:
    title: str
    on: str  # a node name, "members" or "rogue"
    run: tuple[str, ...]  # may use {peer} (once per other member) and {NODE} (its address)
    pattern: str
    expect: bool
    within: float


@dataclass(frozen=True)
class WireCheck:
    title: str
    sender: str
    receiver: str
    proto: str
    port: int
    clear: bool  # the marker must (True) or must never (False) be seen in clear on the bridge


@dataclass(frozen=True)
class Rogue:
    impersonates: str  # a node of chaos.yaml that is never booted (a spare lab machine)


@dataclass(frozen=True)
class Scenario:
    name: str
    config: Path
    boot: tuple[str, ...]
    checks: tuple[Check, ...]
    wire: tuple[WireCheck, ...]
    rogue: Rogue | None
    remove: str | None
    remove_within: float


def _need(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise ChaosError(f"{where}: missing {key!r}")
    return raw[key]


def load_scenario(path: Path) -> Scenario:
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ChaosError(f"{where}: cannot read scenario: {exc}") from None
    if not isinstance(raw, dict):
        raise ChaosError(f"{where}: a scenario is a mapping")
    checks = []
    for i, c in enumerate(raw.get("checks", [])):
        at = f"{where}: checks[{i}]"
        pattern = str(_need(c, "pattern", at))
        try:
            re.compile(pattern.replace("{peer}", "x"))
        except re.error as exc:
            raise ChaosError(f"{at}.pattern: {exc}") from None
        checks.append(Check(str(c.get("title", pattern)), str(_need(c, "node", at)),
                            tuple(str(a) for a in _need(c, "run", at)), pattern,
                            bool(c.get("expect", True)), float(c.get("within", 0))))
    wire = [WireCheck(str(w["title"]), str(w["from"]), str(w["to"]), str(w["proto"]),
                      int(w["port"]), bool(w["clear"])) for w in raw.get("wire", [])]
    rogue = Rogue(str(raw["rogue"]["impersonates"])) if raw.get("rogue") else None
    remove = raw.get("remove") or {}
    return Scenario(path.parent.name, (path.parent / str(raw.get("config", "chaos.yaml"))),
                    tuple(str(n) for n in _need(raw, "boot", where)), tuple(checks),
                    tuple(wire), rogue, remove.get("node"), float(remove.get("within", 60)))
