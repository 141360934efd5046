"""The rendered nftables rulesets, checked by nft and then by real packets in namespaces."""

from __future__ import annotations

import pytest
from chaostest import ROOT, issue_all
from netlab import lab, need_root_tools

from builder.config import load_cluster
from builder.pki import Pki
from builder.render import render_cluster
from builder.views import all_peers, hubs, known_peers

pytestmark = pytest.mark.integration

CASES = [
    ROOT / "chaos.yaml",
    ROOT / "tests/golden/all.yaml",
    ROOT / "tests/golden/migration.yaml",
    ROOT / "tests/golden/head.yaml",
]


@pytest.fixture
def rendered(tmp_path):
    def render(config):
        cluster, _ = load_cluster(config)
        pki = Pki(tmp_path / "pki" / config.stem)
        issue_all(cluster, pki)
        out = tmp_path / "nodes" / config.stem
        render_cluster(cluster, pki, out)
        return cluster, out

    return render


@pytest.mark.parametrize("config", CASES, ids=lambda p: p.stem)
def test_every_ruleset_passes_nft_check_and_loads(config, rendered):
    need_root_tools("nft")
    cluster, out = rendered(config)
    with lab("nft") as the_lab:
        for node in cluster.nodes:
            ruleset = out / node.name / "etc/nftables.conf"
            host = the_lab.add(node.name, str(node.address))
            host.sh("nft", "-c", "-f", str(ruleset))
            host.sh("nft", "-f", str(ruleset))
            listed = host.sh("nft", "list", "set", "inet", "chaos", "cluster_peers").stdout
            # the peers it knows before joining (issue 22); tyd adds the others at run time
            for peer in known_peers(cluster, node, all_peers(cluster), hubs(cluster)):
                assert peer.address in listed


def test_plaintext_is_dropped_and_counted(rendered):
    """node01 with its firewall; an outsider and a spoofed member without IPsec."""
    need_root_tools("nft", "ping", "python3")
    cluster, out = rendered(ROOT / "chaos.yaml")
    with lab("pkt") as the_lab:
        node01 = the_lab.add("node01", "10.99.0.11")
        outsider = the_lab.add("outsider", "10.99.0.200")
        # Before the firewall: the outsider reaches node01 (the test can fail).
        assert outsider.ping("10.99.0.11")
        node01.sh("nft", "-f", str(out / "node01/etc/nftables.conf"))

        before = node01.nft_counter("drop_input")
        assert not outsider.ping("10.99.0.11")
        assert not outsider.tcp_connect("10.99.0.11", 7411)
        assert node01.nft_counter("drop_input") >= before + 2

        # Slurm's ports (slurmctld, slurmd, srun's range): counted apart, an outsider gets none
        before = node01.nft_counter("drop_slurm_outsider")
        for port in (6817, 6818, 60001, 60100):
            assert not outsider.tcp_connect("10.99.0.11", port)
        assert not outsider.tcp_connect("10.99.0.11", 60101)  # past the range: default deny
        assert node01.nft_counter("drop_slurm_outsider") >= before + 4

        before = node01.nft_counter("drop_ike_outsider")
        outsider.sh(
            "python3",
            "-c",
            "import socket; s=socket.socket(socket.AF_INET, "
            "socket.SOCK_DGRAM); s.sendto(b'x'*64, ('10.99.0.11', 500))",
        )
        assert node01.nft_counter("drop_ike_outsider") == before + 1

        # A spoofed member address (node02's) in clear: dropped before conntrack, counted.
        spoof = the_lab.add("spoof", "10.99.0.12")
        before = node01.nft_counter("drop_member_plaintext")
        assert not spoof.ping("10.99.0.11")
        assert not spoof.tcp_connect("10.99.0.11", 7411)
        assert not spoof.tcp_connect("10.99.0.11", 6817)  # Slurm too: only through IPsec
        assert node01.nft_counter("drop_member_plaintext") >= before + 2

        # Fail closed: node01's own plaintext to a member never leaves.
        before = node01.nft_counter("drop_output_plaintext")
        assert not node01.ping("10.99.0.12")
        assert node01.nft_counter("drop_output_plaintext") >= before + 1


def test_runtime_peer_set_changes_reach_the_rules(rendered):
    need_root_tools("nft", "ping")
    cluster, out = rendered(ROOT / "chaos.yaml")
    with lab("set") as the_lab:
        node01 = the_lab.add("node01", "10.99.0.11")
        newcomer = the_lab.add("newcomer", "10.99.0.77")
        node01.sh("nft", "-f", str(out / "node01/etc/nftables.conf"))
        before = node01.nft_counter("drop_member_plaintext")
        node01.sh("nft", "add", "element", "inet", "chaos", "cluster_peers", "{ 10.99.0.77 }")
        assert (
            "10.99.0.77" in node01.sh("nft", "list", "set", "inet", "chaos", "cluster_peers").stdout
        )
        assert not newcomer.ping("10.99.0.11")
        assert node01.nft_counter("drop_member_plaintext") >= before + 1
