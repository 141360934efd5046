"""The rendered /etc/tyd/tyd.json: the documented shape parses; every problem is reported
with file and field, never as a traceback."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaosnode.ipsec import Policy
from tyd import config
from tyd.errors import ConfigError

EXAMPLE: dict[str, Any] = {
    "cluster": "chaos-lab",
    "node": "node01",
    "address": "10.99.0.11",
    "subnet": "10.99.0.0/24",
    "port": 7411,
    "seeds": [{"name": "node01", "address": "10.99.0.11"}],
    "heartbeat_seconds": 5,
    "suspect_after_seconds": 15,
    "remove_after_seconds": 30,
    "tls": {
        "cert": "/etc/swanctl/x509/node.pem",
        "key": "/etc/swanctl/private/node.key",
        "ca": "/etc/swanctl/x509ca/ca.pem",
        "crl": "/etc/swanctl/x509crl/cluster.crl",
    },
    "exports": {
        "json": "/run/tyd/map.json",
        "mosix": "/run/tyd/mosix.map",
        "hostfile": "/run/tyd/hostfile",
        "status": "/run/tyd/status.json",
    },
    "hooks": {
        "vici_socket": "/run/charon.vici",
        "nft_table": "inet chaos",
        "nft_set": "cluster_peers",
        "static_peers": ["10.99.0.12", "10.99.0.13"],
        "ipsec": {
            "scope": "migration",
            "ike_proposals": ["aes128gcm16-prfsha256-x25519"],
            "esp_proposals": ["aes128gcm16-x25519"],
            "rekey_minutes": 60,
            "dpd_seconds": 30,
            "protected_ports": [7411, 12820, 13333],
        },
    },
    "roster": [
        {"name": "node01", "address": "10.99.0.11"},
        {"name": "node02", "address": "10.99.0.12"},
    ],
}


def test_the_rendered_example_parses_into_frozen_typed_config() -> None:
    cfg = config.parse(json.loads(json.dumps(EXAMPLE)), "tyd.json")
    assert cfg.address == ipaddress.IPv4Address("10.99.0.11") and cfg.port == 7411
    assert cfg.seeds[0].name == "node01" and cfg.heartbeat_seconds == 5.0
    assert cfg.hooks.static_peers == {
        ipaddress.IPv4Address("10.99.0.12"),
        ipaddress.IPv4Address("10.99.0.13"),
    }
    assert cfg.tls.crl == Path("/etc/swanctl/x509crl/cluster.crl")
    assert cfg.hooks.ipsec == Policy(
        ipaddress.IPv4Address("10.99.0.11"),
        ("aes128gcm16-prfsha256-x25519",),
        ("aes128gcm16-x25519",),
        60,
        30,
        "migration",
        (7411, 12820, 13333),
    )
    assert cfg.subnet == ipaddress.IPv4Network("10.99.0.0/24")
    assert cfg.roster_map() == {
        "node01": ipaddress.IPv4Address("10.99.0.11"),
        "node02": ipaddress.IPv4Address("10.99.0.12"),
    }
    with pytest.raises(AttributeError):
        cfg.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"subnet": "10.99.1.0/24"}, "subnet: 10.99.1.0/24 does not hold this node's address"),
        ({"subnet": "10.99.0.0/33"}, "subnet: '10.99.0.0/33' is not an IPv4 network"),
        ({"roster": [{"name": "node01"}]}, "roster\\[0\\].address: missing"),
        ({"max_connections_per_source": 1}, "max_connections_per_source: expected an integer"),
        ({"clock_skew_seconds": -1}, "clock_skew_seconds: -1 is outside"),
    ],
)
def test_bounds_settings_are_checked(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.parse({**EXAMPLE, **change}, "tyd.json")


def test_document_is_the_inverse_of_parse() -> None:
    """The config's shape is declared once: chaos-build writes tyd.json with document()."""
    cfg = config.parse(json.loads(json.dumps(EXAMPLE)), "tyd.json")
    assert config.document(cfg) == EXAMPLE
    assert config.parse(json.loads(config.dumps(cfg, "generated")), "again") == cfg
    assert json.loads(config.dumps(cfg, "generated"))["_generated"] == "generated"


def test_swim_is_the_default_gossip_and_the_others_stay_selectable() -> None:
    """tyd.json as chaos-build renders it names no gossip: the daemon runs swim (issue 22);
    an admin's "gossip" picks digest or full, and anything else is refused by name."""
    assert config.parse(json.loads(json.dumps(EXAMPLE))).gossip == "swim"
    for mode in ("digest", "full", "swim"):
        assert config.parse({**EXAMPLE, "gossip": mode}).gossip == mode
    with pytest.raises(ConfigError, match="gossip: expected one of swim, digest, full"):
        config.parse({**EXAMPLE, "gossip": "flood"}, "tyd.json")


def test_hooks_may_be_disabled_with_null() -> None:
    raw = json.loads(json.dumps(EXAMPLE))
    raw["hooks"]["vici_socket"] = None
    raw["hooks"]["nft_set"] = None
    cfg = config.parse(raw)
    assert cfg.hooks.vici_socket is None and cfg.hooks.nft_set is None


def _with(path: str, value: Any) -> dict[str, Any]:
    raw = json.loads(json.dumps(EXAMPLE))
    *parents, last = path.split(".")
    target = raw
    for p in parents:
        target = target[p]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return raw


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("address", "10.99.0.300", "tyd.json: address: '10.99.0.300' is not an IPv4 address"),
        ("port", 0, "tyd.json: port: expected an integer in [1, 65535], got 0"),
        ("port", "7411", "tyd.json: port: expected an integer"),
        ("node", "Node_1", "tyd.json: node: 'Node_1' is not valid here"),
        ("heartbeat_seconds", True, "tyd.json: heartbeat_seconds: expected a number"),
        ("remove_after_seconds", 10, "tyd.json: suspect_after_seconds: need heartbeat_seconds"),
        ("seeds", [{"name": "node01"}], "tyd.json: seeds[0].address: missing"),
        ("tls.crl", KeyError, "tyd.json: tls.crl: missing"),
        ("tls.cert", "relative.pem", "tyd.json: tls.cert: expected an absolute path"),
        ("exports.jsn", "/x", "tyd.json: exports.jsn: unknown setting (typo?)"),
        ("hooks.nft_table", "chaos", "tyd.json: hooks.nft_table: 'chaos' is not 'FAMILY NAME'"),
        ("hooks.static_peers", ["10.99.0.x"], "tyd.json: hooks.static_peers[0]: "),
        ("hooks.nft_set", "bad set", "tyd.json: hooks.nft_set: 'bad set' is not valid here"),
        ("hooks", None, "tyd.json: hooks: expected an object"),
        ("hooks.ipsec.scope", "some", "tyd.json: hooks.ipsec.scope: 'some' is not one of all, "),
        ("hooks.ipsec.rekey_minutes", "60", "tyd.json: hooks.ipsec.rekey_minutes: expected an "),
        ("hooks.ipsec.protected_ports", [], "tyd.json: hooks.ipsec.protected_ports: scope "),
        ("hooks.ipsec.protected_ports", [0], "tyd.json: hooks.ipsec.protected_ports[0]: "),
        ("hooks.ipsec.esp_proposals", ["AES"], "tyd.json: hooks.ipsec.esp_proposals[0]: 'AES' "),
        ("hooks.ipsec.dpd", 30, "tyd.json: hooks.ipsec.dpd: unknown setting (typo?)"),
    ],
)
def test_each_problem_names_file_and_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(_with(path, value), "tyd.json")
    assert any(line.startswith(message) for line in str(err.value).splitlines()), str(err.value)


def test_all_problems_are_reported_at_once() -> None:
    raw = _with("port", -1)
    raw["address"] = "nope"
    with pytest.raises(ConfigError) as err:
        config.parse(raw, "tyd.json")
    assert len(err.value.problems) == 2


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "tyd.json"
    bad.write_text('{"cluster": "x",\n "node": }')
    with pytest.raises(ConfigError, match=r"tyd.json: line 2: invalid JSON"):
        config.load(bad)
    with pytest.raises(ConfigError, match="missing.json: cannot read: No such file"):
        config.load(tmp_path / "missing.json")


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "tyd.json"
    with big.open("wb") as f:
        f.truncate(100 * 1024 * 1024)  # sparse: 100 MiB of zeros, never read in full
    with pytest.raises(ConfigError, match=r"tyd.json: larger than 1 MiB"):
        config.load(big)


def test_cli_reports_config_errors_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "tyd.json"
    bad.write_text(json.dumps(_with("port", 99999)))
    for argv in (["--config", str(bad)], ["status", "--config", str(bad)]):
        proc = subprocess.run(
            [sys.executable, "-m", "tyd", *argv],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=Path(__file__).parents[2],
        )
        assert proc.returncode == 2
        assert f"{bad}: port: expected an integer in [1, 65535], got 99999" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_renderer_comments_are_accepted_but_typos_are_not() -> None:
    raw = json.loads(json.dumps(EXAMPLE))
    raw["_generated"] = "generated by chaos-build; do not edit"
    config.parse(raw, "tyd.json")
    raw["heartbeat_second"] = 5
    with pytest.raises(ConfigError, match="heartbeat_second: unknown setting"):
        config.parse(raw, "tyd.json")
