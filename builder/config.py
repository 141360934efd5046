"""Parse a loaded chaos.yaml into the frozen model, driven by the field declarations.

Every problem is collected (not just the first) and reported with file, line, field and
how to fix it. The top level is the core model's keys and every feature's model section
(builder/features: top_level). Cross-field checks live in `validate.py` and each feature's check.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import enum
import ipaddress
import re
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from chaosnode.window import WINDOW_RE

from .errors import ConfigError, Problem
from .features import finish, models
from .loader import Document, Path_, dotted, load_file, load_text
from .model import Cluster, Node, NodeDefaults
from .validate import cross_check

PATTERNS: dict[str, tuple[re.Pattern[str], str]] = {
    "name": (
        re.compile(r"^[a-z][a-z0-9-]{0,62}$"),
        "use lower-case letters, digits and '-', starting with a letter",
    ),
    "hostname": (
        re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"),
        "use lower-case letters, digits and '-' (a host name, at most 63 chars)",
    ),
    "domain": (
        re.compile(
            r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z]([a-z0-9-]{0,61}"
            r"[a-z0-9])?$"
        ),
        "use a DNS domain such as chaos.lan",
    ),
    "mac": (
        re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"),
        "write six hex pairs separated by ':', e.g. 52:54:00:99:00:11",
    ),
    "proposal": (
        re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$"),
        "use strongSwan proposal syntax, e.g. aes128gcm16-prfsha256-x25519",
    ),
    "label": (
        re.compile(r"^[a-z0-9_-]{0,32}$"),
        "use up to 32 lower-case letters, digits, '_' or '-'",
    ),
    "package": (re.compile(r"^[a-z0-9][a-z0-9+.-]+$"), "use a Debian package name"),
    "ifname": (re.compile(r"^$|^[A-Za-z0-9_.-]{1,15}$"), "use an interface name such as enp3s0"),
    "console": (re.compile(r"^tty[A-Za-z0-9]+(,[0-9]+)?$"), "use e.g. ttyS0,115200"),
    "window": (WINDOW_RE, "write HH:MM-HH:MM on a 24-hour clock, e.g. 17:00-09:00"),
    "user": (
        re.compile(r"^[a-z_][a-z0-9_-]{0,31}$"),
        "use a login name: lower-case letters, digits, '_' or '-', at most 32 chars",
    ),
    "disk": (
        re.compile(r"^$|^/dev/disk/by-id/[A-Za-z0-9:_.+-]+$|^LABEL=[A-Za-z0-9_.-]{1,16}$"),
        "use a /dev/disk/by-id/ path (stable across boots, unlike /dev/sda) or LABEL=NAME",
    ),
    "zone": (
        re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"),
        "use an IANA time zone name such as Europe/Berlin or UTC",
    ),
}


@cache
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def fields_of(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


class Parser:
    """Converts plain YAML data into model instances, collecting problems."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def problem(self, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.doc.file, self.doc.line(path), dotted(path), message))

    # -- dataclasses --------------------------------------------------------
    def record(
        self,
        cls: type,
        raw: Any,
        path: Path_,
        inherited: dict[str, Any] | None = None,
        elsewhere: frozenset[str] = frozenset(),
    ) -> Any:
        """raw -> cls, its declared settings parsed; a key neither declared nor `elsewhere`
        (another model's at the same level) is reported."""
        if not isinstance(raw, dict):
            self.problem(path, f"must be a mapping of settings, not {_kind(raw)}")
            return None
        known = {f.name for f in fields_of(cls) if "help" in f.metadata} | elsewhere
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else f"; known keys: {', '.join(sorted(known))}"
                )
                self.problem((*path, key), f"unknown key{hint}")
        values: dict[str, Any] = {}
        ok = True
        for f in fields_of(cls):
            if f.name in elsewhere or "help" not in f.metadata:
                continue  # another model's key, or not a setting (Cluster.sections)
            if f.name in raw:
                value = self.value(hints(cls)[f.name], raw[f.name], (*path, f.name), f.metadata)
                if value is _BAD:
                    ok = False
                else:
                    values[f.name] = value
            elif inherited and f.name in inherited:
                values[f.name] = inherited[f.name]
            elif f.metadata.get("required"):
                self.problem(
                    path,
                    f"missing required key {f.name!r} ({f.metadata['help']}), "
                    f"e.g. {f.name}: {_example(f.metadata['example'])}",
                )
                ok = False
        if not ok:
            return None
        return cls(**values)

    # -- single values ------------------------------------------------------
    def value(self, tp: Any, raw: Any, path: Path_, meta: typing.Mapping[str, Any]) -> Any:
        origin = typing.get_origin(tp)
        if origin in (types.UnionType, typing.Union):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if raw is None:
                return None
            return self.value(args[0], raw, path, meta)
        if origin is tuple:
            item_tp = typing.get_args(tp)[0]
            if not isinstance(raw, list):
                self.problem(
                    path,
                    f"must be a list, not {_kind(raw)}; write it as "
                    "[a, b] or one '- item' per line",
                )
                return _BAD
            items = [self.value(item_tp, item, (*path, i), meta) for i, item in enumerate(raw)]
            return _BAD if any(i is _BAD or i is None for i in items) else tuple(items)
        if dataclasses.is_dataclass(tp):
            result = self.record(typing.cast(type, tp), raw, path)
            return _BAD if result is None else result
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self.enum(tp, raw, path)
        if tp is bool:
            if not isinstance(raw, bool):
                self.problem(path, f"must be true or false, not {raw!r}")
                return _BAD
            return raw
        if tp is int:
            return self.integer(raw, path, meta)
        if tp is str:
            return self.text(raw, path, meta)
        if tp is ipaddress.IPv4Address:
            return self.address(raw, path)
        if tp is ipaddress.IPv4Network:
            return self.network(raw, path)
        if tp is dt.date:
            return self.date(raw, path)
        raise TypeError(f"no parser for {tp!r}")  # a model declaration error, not user input

    def enum(self, tp: type[enum.Enum], raw: Any, path: Path_) -> Any:
        choices = [m.value for m in tp]
        if raw is False and "off" in choices:  # YAML 1.1 reads a bare `off` as false
            raw = "off"
        if isinstance(raw, str):
            for member in tp:
                if member.value == raw.lower():
                    return member
        close = difflib.get_close_matches(str(raw), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.problem(path, f"{raw!r} is not one of {', '.join(choices)}{hint}")
        return _BAD

    def integer(self, raw: Any, path: Path_, meta: typing.Mapping[str, Any]) -> Any:
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.problem(path, f"must be a whole number, not {raw!r}")
            return _BAD
        low, high = meta.get("min"), meta.get("max")
        if (low is not None and raw < low) or (high is not None and raw > high):
            self.problem(path, f"{raw} is out of range; use {low}..{high}")
            return _BAD
        return raw

    def text(self, raw: Any, path: Path_, meta: typing.Mapping[str, Any]) -> Any:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = self.doc.texts.get(path, str(raw))  # e.g. an unquoted MAC read as base 60
        if not isinstance(raw, str):
            self.problem(path, f"must be text, not {_kind(raw)}")
            return _BAD
        pattern = meta.get("pattern")
        if pattern == "mac":
            raw = raw.lower().replace("-", ":")
        if pattern == "source":
            return self.source(raw, path)
        if pattern in PATTERNS:
            regex, how = PATTERNS[pattern]
            if not regex.match(raw):
                self.problem(path, f"{raw!r} is not valid: {how}")
                return _BAD
        if pattern == "mac" and int(raw[:2], 16) & 1:
            self.problem(path, f"{raw} is a multicast address; a NIC's MAC has an even first octet")
            return _BAD
        return raw

    def source(self, raw: str, path: Path_) -> Any:
        if raw in ("cluster", "any"):
            return raw
        try:
            return str(ipaddress.IPv4Network(raw, strict=True))
        except ValueError as exc:
            self.problem(path, f"{raw!r} is not cluster, any or an IPv4 CIDR ({exc})")
            return _BAD

    def date(self, raw: Any, path: Path_) -> Any:
        if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
            return raw
        try:
            return dt.date.fromisoformat(str(raw))
        except ValueError:
            self.problem(path, f"{raw!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-12-25")
            return _BAD

    def address(self, raw: Any, path: Path_) -> Any:
        try:
            return ipaddress.IPv4Address(str(raw))
        except ValueError:
            self.problem(path, f"{raw!r} is not an IPv4 address such as 10.99.0.11")
            return _BAD

    def network(self, raw: Any, path: Path_) -> Any:
        try:
            return ipaddress.IPv4Network(str(raw), strict=True)
        except ValueError as exc:
            if "host bits set" in str(exc):
                fixed = ipaddress.IPv4Network(str(raw), strict=False)
                self.problem(path, f"{raw} has host bits set; did you mean {fixed}?")
            else:
                self.problem(path, f"{raw!r} is not an IPv4 subnet such as 10.99.0.0/24")
            return _BAD


class _Bad:
    def __repr__(self) -> str:
        return "<invalid>"


_BAD = _Bad()


def _kind(raw: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "empty"}.get(
        type(raw), type(raw).__name__
    )


def _example(value: Any) -> str:
    return str(value)


def parse(doc: Document) -> Cluster:
    """Document -> validated, frozen Cluster (or ConfigError with every problem)."""

    parser = Parser(doc)
    raw = doc.data
    if not isinstance(raw, dict):
        parser.problem((), "the file must be a mapping with cluster:, network: and nodes:")
        raise ConfigError(parser.problems)
    top = {k: v for k, v in raw.items() if k not in ("nodes", "defaults")}
    defaults = parser.value(NodeDefaults, raw.get("defaults", {}), ("defaults",), {})
    inherited = (
        {f.name: getattr(defaults, f.name) for f in dataclasses.fields(NodeDefaults)}
        if isinstance(defaults, NodeDefaults)
        else {}
    )
    nodes = _parse_nodes(parser, raw.get("nodes"), inherited)
    sections = models()
    theirs = frozenset(f.name for model in sections for f in fields_of(model))
    cluster = parser.record(Cluster, {**top, "nodes": []}, (), elsewhere=theirs)
    parts = [parser.record(m, {k: top[k] for k in _keys(m) if k in top}, ()) for m in sections]
    if parser.problems or cluster is None or None in parts:
        raise ConfigError(parser.problems)
    cluster = dataclasses.replace(cluster, nodes=nodes, defaults=defaults, sections=tuple(parts))
    cluster, file_problems = finish(cluster, Path(doc.file).parent)
    if file_problems:  # files a section names (the users file), with their own file:line
        raise ConfigError(file_problems)
    problems = cross_check(cluster, doc)
    if problems:
        raise ConfigError(problems)
    return cluster


def _keys(model: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields_of(model))


def _parse_nodes(parser: Parser, raw: Any, inherited: dict[str, Any]) -> tuple[Node, ...]:
    if raw is None:
        parser.problem(
            ("nodes",),
            "no nodes: list the lab machines under nodes:, each with name, mac and address",
        )
        return ()
    if not isinstance(raw, list):
        parser.problem(("nodes",), f"must be a list of nodes, not {_kind(raw)}")
        return ()
    nodes = []
    for i, item in enumerate(raw):
        node = parser.record(Node, item, ("nodes", i), inherited)
        if node is not None:
            nodes.append(node)
    return tuple(nodes)


def load_cluster(path: Path) -> tuple[Cluster, Document]:
    doc = load_file(path)
    return parse(doc), doc


def load_cluster_text(text: str, file: str = "chaos.yaml") -> Cluster:
    return parse(load_text(text, file))
