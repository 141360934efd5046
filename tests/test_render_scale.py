"""A node's overlay does not grow with the cluster (issue 22): a node that is not a hub (tyd
seed, Slurm head) renders connections, firewall elements and host lines for the hubs only, and
tyd.json carries no roster; a hub knows everyone. tyd adds every other peer at run time
through the same connection definition (tests/test_ipsec_definition.py)."""

from __future__ import annotations

import json

from builder.config import load_cluster_text
from builder.render import environment, node_tree, template_names


def cluster_yaml(n: int) -> str:
    lines = [
        "cluster: {name: scale, domain: lab.test}",
        "network: {subnet: 10.50.0.0/16, gateway: 10.50.0.1}",
        "workload: slurm",
        "tyd: {seeds: [n0000]}",
        "nodes:",
    ]
    for i in range(n):
        roles = ", roles: [head]" if i == 1 else ""
        lines.append(
            f'  - {{name: n{i:04d}, mac: "52:54:00:00:{i >> 8:02x}:{i & 255:02x}", '
            f"address: 10.50.{i >> 8}.{10 + (i & 255)}{roles}}}"
        )
    return "\n".join(lines) + "\n"


def files(n: int, node: str) -> dict[str, bytes]:
    cluster = load_cluster_text(cluster_yaml(n), "scale.yaml")
    tree = node_tree(cluster, cluster.node(node), None, environment(), template_names())
    return {rel: f.data for rel, f in tree.items()}


def test_a_node_that_is_not_a_hub_renders_the_same_bytes_whatever_the_cluster_size() -> None:
    small, large = files(5, "n0003"), files(120, "n0003")
    assert set(small) == set(large)
    grown = [rel for rel in small if len(small[rel]) != len(large[rel])]
    # slurm.conf's MaxNodeCount is the one number that says how large the cluster is
    assert grown in ([], ["etc/slurm/slurm.conf"]), grown
    swanctl = large["etc/swanctl/swanctl.conf"].decode()
    assert "peer-n0000 {" in swanctl and "peer-n0001 {" in swanctl
    assert "peer-n0002 {" not in swanctl and "peer-n0119 {" not in swanctl
    nft = large["etc/nftables.conf"].decode()
    assert "elements = { 10.50.0.10, 10.50.0.11 }" in nft
    hosts = large["etc/hosts"].decode()
    assert "n0000" in hosts and "n0003" in hosts and "n0119" not in hosts


def test_tyd_config_names_the_hubs_and_no_roster() -> None:
    conf = json.loads(files(120, "n0003")["etc/tyd/tyd.json"])
    assert "roster" not in conf
    assert conf["hooks"]["static_peers"] == ["10.50.0.10", "10.50.0.11"]
    assert conf["seeds"] == [{"name": "n0000", "address": "10.50.0.10"}]


def test_a_hub_knows_every_node() -> None:
    for hub in ("n0000", "n0001"):
        conf = json.loads(files(30, hub)["etc/tyd/tyd.json"])
        assert len(conf["hooks"]["static_peers"]) == 29
        swanctl = files(30, hub)["etc/swanctl/swanctl.conf"].decode()
        assert sum(line.startswith("    peer-") for line in swanctl.splitlines()) == 29
