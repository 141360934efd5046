"""One IPsec connection definition (chaosnode/ipsec.py): the swanctl.conf that chaos-build
renders and the VICI load-conn that tyd sends for a run-time peer are the same connection."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from chaostest import ROOT

from builder.config import load_cluster
from builder.render import environment, node_tree, template_names
from builder.views import ipsec_policy
from chaosnode import ipsec
from chaosnode.paths import CA_CERT, NODE_CERT
from tyd import config as tyd_config
from tyd.ipsec import ViciHook
from tyd.member import Member, State

GOLDEN = ROOT / "tests" / "golden"


def parse_swanctl(text: str) -> dict[str, Any]:
    """swanctl.conf syntax -> nested dict; every value a list (`a, b` -> [a, b])."""
    root: dict[str, Any] = {}
    stack = [root]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            section: dict[str, Any] = {}
            stack[-1][line[:-1].strip()] = section
            stack.append(section)
        elif line == "}":
            stack.pop()
        else:
            key, _, value = line.partition("=")
            stack[-1][key.strip()] = [v.strip() for v in value.split(",")]
    assert stack == [root], "unbalanced braces"
    return root


def as_lists(section: ipsec.Section) -> dict[str, Any]:
    """A VICI mapping in the parsed file's shape (scalars as one-element lists)."""
    return {
        k: as_lists(v) if isinstance(v, dict) else [v] if isinstance(v, str) else list(v)
        for k, v in section.items()
    }


def rendered_node(case: str, index: int) -> tuple[Any, Any, dict[str, bytes]]:
    cluster, _ = load_cluster(GOLDEN / f"{case}.yaml")
    node = cluster.nodes[index]
    tree = node_tree(cluster, node, None, environment(), template_names())
    return cluster, node, {rel: f.data for rel, f in tree.items()}


def runtime_hook(tyd_json: bytes) -> ViciHook:
    """tyd's VICI hook as the node builds it from its rendered tyd.json; certificates by file
    name here so the mapping compares with the rendered file."""
    cfg = tyd_config.parse(json.loads(tyd_json), "tyd.json")
    return ViciHook(ROOT / "absent.vici", cfg.hooks.ipsec, NODE_CERT, CA_CERT, frozenset())


@pytest.mark.parametrize("case", ["all", "migration"])
def test_rendered_and_runtime_connections_are_the_same(case: str) -> None:
    cluster, node, files = rendered_node(case, 0)
    conns = parse_swanctl(files["etc/swanctl/swanctl.conf"].decode())["connections"]
    hook = runtime_hook(files["etc/tyd/tyd.json"])
    assert hook.policy == ipsec_policy(cluster, node)
    peers = [n for n in cluster.nodes if n is not node]
    assert set(conns) == {f"peer-{p.name}" for p in peers}
    for peer in peers:
        member = Member(peer.name, peer.address, "ab" * 32, State.ALIVE, 1, 0)
        runtime = hook.connection(member)
        assert list(runtime) == [f"peer-{peer.name}"]
        assert as_lists(runtime[f"peer-{peer.name}"]) == conns[f"peer-{peer.name}"]


def test_each_connection_binds_the_peer_identity_to_its_address() -> None:
    _, node, files = rendered_node("all", 1)
    conns = parse_swanctl(files["etc/swanctl/swanctl.conf"].decode())["connections"]
    for conn in conns.values():
        assert conn["remote"]["id"] == conn["remote_addrs"]  # one address, its identity
        assert conn["local"]["id"] == conn["local_addrs"] == [str(node.address)]
        assert conn["remote"]["revocation"] == ["relaxed"]
        for child in conn["children"].values():
            assert child["start_action"] == child["dpd_action"] == child["close_action"]


def policy(scope: str) -> ipsec.Policy:
    return ipsec.Policy(
        ipaddress.IPv4Address("10.9.0.1"),
        ("aes128gcm16-prfsha256-x25519",),
        ("aes128gcm16-x25519",),
        45,
        20,
        scope,
        (7411, 12820),
    )


def test_scope_migration_protects_only_the_ports_in_both_directions() -> None:
    children = ipsec.children(policy("migration"), "b", ipaddress.IPv4Address("10.9.0.2"))
    assert {name: (c["local_ts"], c["remote_ts"]) for name, c in children.items()} == {
        "peer-b-to-7411": (["10.9.0.1/32[tcp]"], ["10.9.0.2/32[tcp/7411]"]),
        "peer-b-from-7411": (["10.9.0.1/32[tcp/7411]"], ["10.9.0.2/32[tcp]"]),
        "peer-b-to-12820": (["10.9.0.1/32[tcp]"], ["10.9.0.2/32[tcp/12820]"]),
        "peer-b-from-12820": (["10.9.0.1/32[tcp/12820]"], ["10.9.0.2/32[tcp]"]),
    }
    conn = ipsec.connection(
        policy("all"), "b", ipaddress.IPv4Address("10.9.0.2"), ipsec.Certs("PEM-NODE", "PEM-CA")
    )["peer-b"]
    assert conn["dpd_delay"] == "20s" and conn["local"] == {
        "auth": "pubkey",
        "certs": ["PEM-NODE"],
        "id": "10.9.0.1",
    }
    child = conn["children"]["peer-b"]  # type: ignore[index]
    assert child["rekey_time"] == "45m" and child["remote_ts"] == ["10.9.0.2/32"]


def test_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="'some' is not one of all, migration"):
        policy("some")
