"""The tyd config (/etc/tyd/tyd.json, rendered by chaos-build): parse, validate, freeze.

Every problem is reported as `FILE: FIELD: what is wrong`, all of them at once.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaosnode.ipsec import SCOPES, Policy

from .codec import CLUSTER_RE, NAME_RE
from .errors import ConfigError

DEFAULT_PATH = Path("/etc/tyd/tyd.json")
# a rendered tyd.json is a few KiB (static peers of a 1000-node lab: ~20 KiB); read no more
MAX_FILE_BYTES = 1024 * 1024
Address = ipaddress.IPv4Address


# swim by default: a steady cluster's tick costs O(1) bytes a node whatever its size (issue
# 22; bench/lab_scale.py); digest and full stay selectable with tyd.json's "gossip"
GOSSIP_MODES = ("swim", "digest", "full")
DEFAULT_GOSSIP = GOSSIP_MODES[0]


@dataclass(frozen=True)
class Seed:
    name: str
    address: Address


@dataclass(frozen=True)
class TlsPaths:
    cert: Path
    key: Path
    ca: Path
    crl: Path


@dataclass(frozen=True)
class ExportPaths:
    json: Path
    mosix: Path
    hostfile: Path
    status: Path


@dataclass(frozen=True)
class Hooks:
    vici_socket: Path | None
    nft_table: str
    nft_set: str | None
    static_peers: frozenset[Address]
    ipsec: Policy  # the IPsec policy for peers that join at run time


@dataclass(frozen=True)
class Config:
    cluster: str
    node: str
    address: Address
    subnet: ipaddress.IPv4Network  # members live here and nowhere else
    # chaos.yaml's nodes: a member's name and address must be listed together here (as in
    # its certificate); None (tests, hand-written configs): the certificate alone decides
    roster: tuple[Seed, ...] | None
    port: int
    seeds: tuple[Seed, ...]
    heartbeat_seconds: float
    suspect_after_seconds: float
    remove_after_seconds: float
    tls: TlsPaths
    exports: ExportPaths
    hooks: Hooks
    # Optional knobs (not rendered by chaos-build; defaults suit a lab LAN).
    io_timeout_seconds: float = 10.0
    gossip_fanout: int = 3
    max_connections: int = 512
    max_connections_per_source: int = 8
    clock_skew_seconds: float = 30.0  # tolerated between nodes; see tyd.record.Freshness
    # digest: DIGEST/DELTA, records re-signed only when needed, heartbeats apart (tyd.gossip);
    # swim: probes and bucket digests, O(1) bytes a tick, accusations refuted (tyd.swim);
    # full: the whole map with certificates every tick (protocol 2 as first built)
    gossip: str = DEFAULT_GOSSIP

    def roster_map(self) -> dict[str, Address] | None:
        return None if self.roster is None else {s.name: s.address for s in self.roster}


TOP_KEYS = {
    "cluster",
    "node",
    "address",
    "subnet",
    "port",
    "seeds",
    "heartbeat_seconds",
    "suspect_after_seconds",
    "remove_after_seconds",
    "tls",
    "exports",
    "hooks",
}
OPTIONAL_KEYS = {
    "roster",
    "io_timeout_seconds",
    "gossip_fanout",
    "max_connections",
    "max_connections_per_source",
    "clock_skew_seconds",
    "gossip",
}
TLS_KEYS = {"cert", "key", "ca", "crl"}
EXPORT_KEYS = {"json", "mosix", "hostfile", "status"}
HOOK_KEYS = {"vici_socket", "nft_table", "nft_set", "static_peers", "ipsec"}
IPSEC_KEYS = {
    "scope",
    "ike_proposals",
    "esp_proposals",
    "rekey_minutes",
    "dpd_seconds",
    "protected_ports",
}
NFT_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
NFT_FAMILIES = {"ip", "ip6", "inet", "arp", "bridge", "netdev"}
PROPOSAL_RE = re.compile(r"[a-z0-9_-]{1,128}")


class _Checker:
    """Collects problems while reading a raw JSON object into typed values."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, field: str, message: str) -> None:
        self.problems.append(f"{field}: {message}")

    def keys(
        self, obj: Any, field: str, required: set[str], optional: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        where = field or "top level"
        if not isinstance(obj, dict):
            self.bad(where, f"expected an object, got {type(obj).__name__}")
            return {}
        prefix = f"{field}." if field else ""
        for key in sorted(required - obj.keys()):
            self.bad(f"{prefix}{key}", "missing")
        for key in sorted(obj.keys() - required - optional):
            if not key.startswith("_"):  # "_generated" and other comments of the renderer
                self.bad(f"{prefix}{key}", "unknown setting (typo?)")
        return obj

    def text(self, value: Any, field: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            self.bad(field, "expected a non-empty string")
            return ""
        if pattern is not None and not pattern.fullmatch(value):
            self.bad(field, f"{value!r} is not valid here")
        return value

    def address(self, value: Any, field: str) -> Address:
        try:
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return ipaddress.IPv4Address(value)
        except ValueError as exc:
            self.bad(field, f"{value!r} is not an IPv4 address ({exc})")
            return ipaddress.IPv4Address(0)

    def number(self, value: Any, field: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.bad(field, "expected a number of seconds")
            return low
        if not low <= value <= high:
            self.bad(field, f"{value} is outside [{low}, {high}]")
        return float(value)

    def integer(self, value: Any, field: str, low: int, high: int) -> int:
        if type(value) is not int or not low <= value <= high:
            self.bad(field, f"expected an integer in [{low}, {high}], got {value!r}")
            return low
        return value

    def path(self, value: Any, field: str) -> Path:
        if not isinstance(value, str) or not value.startswith("/"):
            self.bad(field, f"expected an absolute path, got {value!r}")
            return Path("/nonexistent")
        return Path(value)

    def strings(self, value: Any, field: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.bad(field, "expected a list of strings")
            return ()
        return tuple(self.text(v, f"{field}[{i}]", pattern) for i, v in enumerate(value))


def parse(raw: Any, source: str = "<config>") -> Config:
    c = _Checker()
    top = c.keys(raw, "", TOP_KEYS, frozenset(OPTIONAL_KEYS))
    if c.problems and not top:
        raise ConfigError(source, c.problems)
    get = top.get
    cluster = c.text(get("cluster"), "cluster", CLUSTER_RE)
    node = c.text(get("node"), "node", NAME_RE)
    address = c.address(get("address"), "address")
    subnet = _subnet(c, get("subnet"), address)
    roster = None if get("roster") is None else _seeds(c, get("roster"), "roster")
    port = c.integer(get("port"), "port", 1, 65535)
    seeds = _seeds(c, get("seeds"))
    heartbeat = c.number(get("heartbeat_seconds"), "heartbeat_seconds", 0.01, 3600)
    suspect = c.number(get("suspect_after_seconds"), "suspect_after_seconds", 0.02, 86400)
    remove = c.number(get("remove_after_seconds"), "remove_after_seconds", 0.03, 86400)
    if not heartbeat < suspect < remove:
        c.bad(
            "suspect_after_seconds",
            f"need heartbeat_seconds ({heartbeat}) < "
            f"suspect_after_seconds ({suspect}) < remove_after_seconds ({remove})",
        )
    t = c.keys(get("tls"), "tls", TLS_KEYS)
    tls = TlsPaths(*(c.path(t.get(k), f"tls.{k}") for k in ("cert", "key", "ca", "crl")))
    e = c.keys(get("exports"), "exports", EXPORT_KEYS)
    exports = ExportPaths(
        *(c.path(e.get(k), f"exports.{k}") for k in ("json", "mosix", "hostfile", "status"))
    )
    hooks = _hooks(c, get("hooks"), address)
    io_timeout = c.number(get("io_timeout_seconds", 10.0), "io_timeout_seconds", 0.05, 600)
    fanout = c.integer(get("gossip_fanout", 3), "gossip_fanout", 1, 64)
    max_conns = c.integer(get("max_connections", 512), "max_connections", 8, 65536)
    per_source = c.integer(
        get("max_connections_per_source", 8), "max_connections_per_source", 2, 1024
    )
    skew = c.number(get("clock_skew_seconds", 30.0), "clock_skew_seconds", 0, 3600)
    gossip = get("gossip", DEFAULT_GOSSIP)
    if gossip not in GOSSIP_MODES:
        c.bad("gossip", f"expected one of {', '.join(GOSSIP_MODES)}")
    if c.problems:
        raise ConfigError(source, c.problems)
    return Config(
        cluster=cluster,
        node=node,
        address=address,
        subnet=subnet,
        roster=roster,
        port=port,
        seeds=seeds,
        heartbeat_seconds=heartbeat,
        suspect_after_seconds=suspect,
        remove_after_seconds=remove,
        tls=tls,
        exports=exports,
        hooks=hooks,
        io_timeout_seconds=io_timeout,
        gossip_fanout=fanout,
        max_connections=max_conns,
        max_connections_per_source=per_source,
        clock_skew_seconds=skew,
        gossip=str(gossip),
    )


def _subnet(c: _Checker, value: Any, address: Address) -> ipaddress.IPv4Network:
    if value is None:  # reported as missing
        return ipaddress.IPv4Network("0.0.0.0/0")
    try:
        if not isinstance(value, str):
            raise ValueError("expected a string like 10.99.0.0/24")
        subnet = ipaddress.IPv4Network(value)
    except ValueError as exc:
        c.bad("subnet", f"{value!r} is not an IPv4 network ({exc})")
        return ipaddress.IPv4Network("0.0.0.0/32")
    if int(address) and address not in subnet:  # 0.0.0.0: the address itself was bad
        c.bad("subnet", f"{subnet} does not hold this node's address {address}")
    return subnet


def _seeds(c: _Checker, value: Any, field: str = "seeds") -> tuple[Seed, ...]:
    if not isinstance(value, list):
        c.bad(field, "expected a list of {name, address} objects")
        return ()
    out = []
    for i, raw in enumerate(value):
        s = c.keys(raw, f"{field}[{i}]", {"name", "address"})
        if s:
            out.append(
                Seed(
                    c.text(s.get("name"), f"{field}[{i}].name", NAME_RE),
                    c.address(s.get("address"), f"{field}[{i}].address"),
                )
            )
    return tuple(out)


def _hooks(c: _Checker, value: Any, address: Address) -> Hooks:
    h = c.keys(value, "hooks", HOOK_KEYS)
    vici = h.get("vici_socket")
    nft_set = h.get("nft_set")
    table = c.text(h.get("nft_table"), "hooks.nft_table")
    parts = table.split()
    if table and (
        len(parts) != 2 or parts[0] not in NFT_FAMILIES or not NFT_IDENT.fullmatch(parts[1])
    ):
        c.bad("hooks.nft_table", f"{table!r} is not 'FAMILY NAME' (e.g. 'inet chaos')")
    peers = h.get("static_peers")
    if not isinstance(peers, list):
        c.bad("hooks.static_peers", "expected a list of IPv4 addresses")
        peers = []
    return Hooks(
        vici_socket=None if vici is None else c.path(vici, "hooks.vici_socket"),
        nft_table=table,
        nft_set=None if nft_set is None else c.text(nft_set, "hooks.nft_set", NFT_IDENT),
        static_peers=frozenset(
            c.address(p, f"hooks.static_peers[{i}]") for i, p in enumerate(peers)
        ),
        ipsec=_ipsec(c, h.get("ipsec"), address),
    )


def _ipsec(c: _Checker, value: Any, address: Address) -> Policy:
    s = c.keys(value, "hooks.ipsec", IPSEC_KEYS)
    scope = s.get("scope")
    if scope not in SCOPES:
        c.bad("hooks.ipsec.scope", f"{scope!r} is not one of {', '.join(SCOPES)}")
        scope = SCOPES[0]
    ports = s.get("protected_ports")
    if not isinstance(ports, list):
        c.bad("hooks.ipsec.protected_ports", "expected a list of tcp ports")
        ports = []
    if scope == "migration" and not ports:
        c.bad("hooks.ipsec.protected_ports", "scope migration protects these ports: none given")
    return Policy(
        address=address,
        ike_proposals=c.strings(s.get("ike_proposals"), "hooks.ipsec.ike_proposals", PROPOSAL_RE),
        esp_proposals=c.strings(s.get("esp_proposals"), "hooks.ipsec.esp_proposals", PROPOSAL_RE),
        rekey_minutes=c.integer(s.get("rekey_minutes"), "hooks.ipsec.rekey_minutes", 1, 1440),
        dpd_seconds=c.integer(s.get("dpd_seconds"), "hooks.ipsec.dpd_seconds", 1, 3600),
        scope=scope,
        protected_ports=tuple(
            c.integer(p, f"hooks.ipsec.protected_ports[{i}]", 1, 65535) for i, p in enumerate(ports)
        ),
    )


def load(path: Path) -> Config:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        text = data.decode("utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["not UTF-8 text"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            str(path),
            [
                f"larger than {MAX_FILE_BYTES >> 20} MiB; tyd.json is "
                "rendered by chaos-build and is a few KiB"
            ],
        )
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), [f"line {exc.lineno}: invalid JSON: {exc.msg}"]) from None
    return parse(raw, str(path))


def document(cfg: Config, generated: str | None = None) -> dict[str, Any]:
    """The JSON document for cfg: the inverse of parse(), so the config's shape is declared
    here once and chaos-build writes tyd.json through it (optional knobs stay at defaults)."""
    doc: dict[str, Any] = {"_generated": generated} if generated else {}
    hooks, policy = cfg.hooks, cfg.hooks.ipsec
    doc.update(
        {
            "cluster": cfg.cluster,
            "node": cfg.node,
            "address": str(cfg.address),
            "subnet": str(cfg.subnet),
            "port": cfg.port,
            "seeds": [{"name": s.name, "address": str(s.address)} for s in cfg.seeds],
            "heartbeat_seconds": _seconds(cfg.heartbeat_seconds),
            "suspect_after_seconds": _seconds(cfg.suspect_after_seconds),
            "remove_after_seconds": _seconds(cfg.remove_after_seconds),
            "tls": {k: str(getattr(cfg.tls, k)) for k in ("cert", "key", "ca", "crl")},
            "exports": {
                k: str(getattr(cfg.exports, k)) for k in ("json", "mosix", "hostfile", "status")
            },
            "hooks": {
                "vici_socket": str(hooks.vici_socket) if hooks.vici_socket else None,
                "nft_table": hooks.nft_table,
                "nft_set": hooks.nft_set,
                "static_peers": [str(a) for a in sorted(hooks.static_peers)],
                "ipsec": {
                    "scope": policy.scope,
                    "ike_proposals": list(policy.ike_proposals),
                    "esp_proposals": list(policy.esp_proposals),
                    "rekey_minutes": policy.rekey_minutes,
                    "dpd_seconds": policy.dpd_seconds,
                    "protected_ports": list(policy.protected_ports),
                },
            },
        }
    )
    if cfg.roster is not None:
        doc["roster"] = [{"name": s.name, "address": str(s.address)} for s in cfg.roster]
    return doc


def _seconds(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def dumps(cfg: Config, generated: str | None = None) -> str:
    return json.dumps(document(cfg, generated), indent=2) + "\n"
