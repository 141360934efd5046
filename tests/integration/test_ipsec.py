"""The rendered strongSwan configs in a real charon, one per namespace.

This host's kernel has no ESP: IKE with certificate auth completes between namespaces, but a
CHILD_SA cannot be installed ("Function not implemented"). So this tier proves the configs,
the trap policies and IKE authentication; ESP on the wire is proven inside QEMU guests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from chaostest import ROOT, install_enrolled_identity, issue_all
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from netlab import CHARON, Host, Lab, lab, need_root_tools, wait_for

from builder.config import load_cluster, load_cluster_text
from builder.model import Cluster
from builder.pki import Pki
from builder.render import render_cluster
from builder.views import all_peers, hubs, known_peers
from tyd import config as tyd_config
from tyd.adapters import build_hooks
from tyd.ipsec import ViciHook
from tyd.member import Member, State
from tyd.nft import NftSetHook

pytestmark = pytest.mark.integration


def render(tmp: Path, cluster: Cluster, tag: str) -> Path:
    pki = Pki(tmp / "pki" / tag)
    issue_all(cluster, pki)
    out = tmp / "nodes" / tag
    render_cluster(cluster, pki, out)
    install_enrolled_identity(out, cluster, pki)
    return out


class Charon:
    """charon-systemd for one rendered node inside one namespace."""

    def __init__(self, the_lab: Lab, host: Host, node_root: Path, tmp: Path) -> None:
        self.host = host
        self.socket = tmp / f"{host.ns}.vici"
        self.log = tmp / f"{host.ns}.charon.log"
        conf = tmp / f"{host.ns}.strongswan.conf"
        # The rendered file first, then only the runtime paths of this test.
        conf.write_text(
            f"include {node_root}/etc/strongswan.conf\n"
            "charon-systemd {\n"
            f"  plugins {{ vici {{ socket = unix://{self.socket} }} }}\n"
            f"  filelog {{ test {{ path = {self.log}\n flush_line = yes\n default = 1\n"
            "    ike = 2\n cfg = 2 } }\n"
            "}\n"
            f"swanctl {{ socket = unix://{self.socket} }}\n"
        )
        self.env = {"STRONGSWAN_CONF": str(conf), "SWANCTL_DIR": str(node_root / "etc/swanctl")}
        the_lab.spawn(host, [str(CHARON)], self.env, tmp / f"{host.ns}.stdout")
        wait_for(self.socket.exists, 15, f"charon's VICI socket in {host.ns}")

    def swanctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.host.sh(
            "swanctl", *args, "--uri", f"unix://{self.socket}", env=self.env, check=check
        )

    def load_all(self) -> str:
        return self.host.sh("swanctl", "--load-all", "--noprompt", env=self.env).stdout

    def established_with(self, address: str) -> bool:
        sas = self.swanctl("--list-sas", check=False).stdout
        return "ESTABLISHED" in sas and address in sas

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def tools():
    need_root_tools("nft", "swanctl", str(CHARON))


@pytest.mark.parametrize(
    "config", [ROOT / "chaos.yaml", ROOT / "tests/golden/migration.yaml"], ids=lambda p: p.stem
)
def test_rendered_configs_load_into_charon(tools, tmp_path, config):
    cluster, _ = load_cluster(config)
    out = render(tmp_path, cluster, "c")
    with lab("load") as the_lab:
        node = cluster.nodes[0]
        host = the_lab.add(node.name, str(node.address))
        charon = Charon(the_lab, host, out / node.name, tmp_path)
        loaded = charon.load_all()
        peers = len(cluster.nodes) - 1
        assert f"loaded connection 'peer-{cluster.nodes[1].name}'" in loaded
        assert f"successfully loaded {peers} connections, 0 unloaded" in loaded
        conns = charon.swanctl("--list-conns").stdout
        assert "TRANSPORT" in conns and "0.0.0.0/0" not in conns
        pols = charon.swanctl("--list-pols").stdout
        peer = str(cluster.nodes[1].address)
        assert peer in pols
        for line in pols.splitlines():
            assert "0.0.0.0/0" not in line


def self_sign(node_root: Path) -> None:
    """Replace a rendered node's certificate (and the CA it trusts) by a self-signed one
    with the same key, subject and SANs."""
    swanctl = node_root / "etc/swanctl"
    key = serialization.load_pem_private_key((swanctl / "private/node.key").read_bytes(), None)
    old = x509.load_pem_x509_certificate((swanctl / "x509/node.pem").read_bytes())
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(old.not_valid_before_utc)
        .not_valid_after(old.not_valid_after_utc)
    )
    for ext in old.extensions:
        if ext.oid != x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            builder = builder.add_extension(ext.value, ext.critical)
    pem = builder.sign(key, None).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]
    (swanctl / "x509/node.pem").write_bytes(pem)
    (swanctl / "x509ca/ca.pem").write_bytes(pem)


@pytest.mark.parametrize("rogue", ["foreign-ca", "self-signed"])
def test_two_nodes_authenticate_and_a_rogue_is_refused(tools, tmp_path, rogue):
    cluster, _ = load_cluster(ROOT / "chaos.yaml")
    out = render(tmp_path, cluster, "good")
    # The rogue: same names and addresses, certificates from a different CA (or none).
    rogue_cluster = load_cluster_text(
        (ROOT / "chaos.yaml").read_text().replace("name: chaos-lab", "name: rogue-lab")
    )
    rogue_out = render(tmp_path, rogue_cluster, "rogue")
    if rogue == "self-signed":
        self_sign(rogue_out / "node03")
    with lab("ike") as the_lab:
        h1 = the_lab.add("node01", "10.99.0.11")
        h2 = the_lab.add("node02", "10.99.0.12")
        c1 = Charon(the_lab, h1, out / "node01", tmp_path)
        c2 = Charon(the_lab, h2, out / "node02", tmp_path)
        for host, name in ((h1, "node01"), (h2, "node02")):
            host.sh("nft", "-f", str(out / name / "etc/nftables.conf"))
        c1.load_all()
        c2.load_all()
        # The first packet to the peer hits the trap policy and starts IKE.
        h1.ping("10.99.0.12")
        wait_for(
            lambda: c1.established_with("10.99.0.12"), 20, "IKE_SA node01 -> node02 ESTABLISHED"
        )
        assert c2.established_with("10.99.0.11")
        log = c1.log_text()
        assert "authentication of '10.99.0.12' with ED25519 successful" in log, log[-3000:]
        if "NO_PROPOSAL_CHOSEN" in log or "Function not implemented" in log:
            print(
                "NOTE: this kernel has no ESP; CHILD_SA install failed as expected; "
                "ESP on the wire is proven in the QEMU tier"
            )

        # A rogue with a foreign-CA certificate at node03's address is refused.
        h3 = the_lab.add("rogue", "10.99.0.13")
        h3.sh("nft", "-f", str(rogue_out / "node03" / "etc/nftables.conf"))
        c3 = Charon(the_lab, h3, rogue_out / "node03", tmp_path)
        c3.load_all()

        def refused() -> bool:
            h3.ping("10.99.0.11")  # each try hits a trap again, in both directions
            h1.ping("10.99.0.13")
            return any(
                sign in text
                for text in (c1.log_text(), c3.log_text())
                for sign in ("AUTHENTICATION_FAILED", "constraint check failed", "no trusted")
            )

        try:
            wait_for(refused, 30, "node01 to refuse the rogue")
        except AssertionError:
            print("node01:", c1.log_text()[-30000:], "\nrogue:", c3.log_text()[-30000:])
            raise
        assert not c1.established_with("10.99.0.13")
        assert not c3.established_with("10.99.0.11")


def conn_listing(listing: str, name: str) -> str:
    """One connection's block of `swanctl --list-conns`."""
    lines = listing.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: "))
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines)
    )
    return "\n".join(lines[start:end])


def load_through_tyd(node_root: Path, socket: Path, peer_name: str, peer_address: str) -> None:
    """What tyd does for a run-time peer: its rendered tyd.json, its VICI hook, load-conn."""
    cfg = tyd_config.load(node_root / "etc/tyd/tyd.json")
    swanctl = node_root / "etc/swanctl"
    cfg = dataclasses.replace(
        cfg,
        tls=dataclasses.replace(
            cfg.tls, cert=swanctl / "x509/node.pem", ca=swanctl / "x509ca/ca.pem"
        ),
        hooks=dataclasses.replace(
            cfg.hooks, vici_socket=socket, nft_set=None, static_peers=frozenset()
        ),
    )
    [hook] = build_hooks(cfg)
    peer = Member(peer_name, ipaddress.IPv4Address(peer_address), "ab" * 32, State.ALIVE, 1, 0)
    asyncio.run(hook.add(peer))


@pytest.mark.parametrize(
    "config", [ROOT / "chaos.yaml", ROOT / "tests/golden/migration.yaml"], ids=lambda p: p.stem
)
def test_rendered_and_runtime_connections_are_the_same_in_charon(tools, tmp_path, config):
    """The same peer, once from the rendered swanctl.conf and once through tyd's VICI hook,
    each in its own charon: `swanctl --list-conns` shows the same connection."""
    cluster, _ = load_cluster(config)
    out = render(tmp_path, cluster, "c")
    node, peer = cluster.nodes[0], cluster.nodes[1]
    name = f"peer-{peer.name}"
    with lab("file") as file_lab, lab("vici") as vici_lab:
        from_file = Charon(
            file_lab, file_lab.add(node.name, str(node.address)), out / node.name, tmp_path
        )
        from_file.load_all()
        by_tyd = Charon(
            vici_lab, vici_lab.add(node.name, str(node.address)), out / node.name, tmp_path
        )
        load_through_tyd(out / node.name, by_tyd.socket, peer.name, str(peer.address))
        rendered = conn_listing(from_file.swanctl("--list-conns").stdout, name)
        runtime_all = by_tyd.swanctl("--list-conns").stdout
        runtime = conn_listing(runtime_all, name)
    assert runtime_all.count(": IKEv2") == 1
    assert f"remote public key authentication:\n    id: {peer.address}" in rendered
    assert "TRANSPORT" in rendered and "0.0.0.0/0" not in rendered
    assert runtime == rendered, f"rendered:\n{rendered}\nrun-time:\n{runtime}"


def test_a_member_certificate_from_another_members_address_gets_no_ike_sa(tools, tmp_path):
    """Issue 9 point 7. C holds B's valid certificate and key and claims B's identity from its
    own address: A establishes no IKE_SA with it. B itself, from B's address, still does."""
    cluster, _ = load_cluster(ROOT / "chaos.yaml")
    out = render(tmp_path, cluster, "c")
    a, b, c = (cluster.nodes[i] for i in range(3))
    stolen = tmp_path / "stolen" / c.name
    shutil.copytree(out / c.name, stolen)
    for rel in ("etc/swanctl/x509/node.pem", "etc/swanctl/private/node.key"):
        shutil.copy(out / b.name / rel, stolen / rel)
    conf = stolen / "etc/swanctl/swanctl.conf"
    text = conf.read_text()
    known = known_peers(cluster, c, all_peers(cluster), hubs(cluster))
    assert text.count(f"id = {c.address}\n") == len(known)  # the local ids only
    conf.write_text(text.replace(f"id = {c.address}\n", f"id = {b.address}\n"))
    with lab("stolen") as the_lab:
        ha = the_lab.add(a.name, str(a.address))
        hb = the_lab.add(b.name, str(b.address))
        hc = the_lab.add(c.name, str(c.address))
        ha.sh("nft", "-f", str(out / a.name / "etc/nftables.conf"))
        ca = Charon(the_lab, ha, out / a.name, tmp_path)
        cb = Charon(the_lab, hb, out / b.name, tmp_path)
        cc = Charon(the_lab, hc, stolen, tmp_path)
        for charon in (ca, cb, cc):
            charon.load_all()

        def refused() -> bool:
            hc.ping(str(a.address))  # C's trap for A starts IKE as B
            return "no matching peer config found" in ca.log_text()

        try:
            wait_for(refused, 30, f"{a.name} to refuse B's certificate from C's address")
        except AssertionError:
            print("A:", ca.log_text()[-20000:], "\nC:", cc.log_text()[-20000:])
            raise
        log = ca.log_text()
        print(
            "A's charon on the attempt:\n"
            + "\n".join(
                line
                for line in log.splitlines()
                if f"{c.address}" in line or "peer config" in line or "AUTHENTICATION" in line
            )
        )
        assert f"...{c.address}[{b.address}]" in log  # the claim: B's identity, C's address
        assert not ca.established_with(str(c.address))
        assert "ESTABLISHED" not in cc.swanctl("--list-sas").stdout

        # Positive control: the honest B, from B's own address, gets its IKE_SA.
        hb.ping(str(a.address))
        wait_for(
            lambda: ca.established_with(str(b.address)),
            20,
            f"IKE_SA {b.name} -> {a.name} ESTABLISHED",
        )
        assert f"authentication of '{b.address}' with ED25519 successful" in ca.log_text()
        assert not ca.established_with(str(c.address))


def runtime_hooks(node_root: Path, host: Host, socket: Path) -> list[Any]:
    """tyd's nft and VICI hooks as the node builds them from its rendered tyd.json (its
    static peers, its IPsec policy), aimed at this namespace's nft and charon."""
    cfg = tyd_config.load(node_root / "etc/tyd/tyd.json")
    h, swanctl = cfg.hooks, node_root / "etc/swanctl"
    assert h.nft_set is not None
    return [
        NftSetHook(h.nft_table, h.nft_set, h.static_peers, prefix=("ip", "netns", "exec", host.ns)),
        ViciHook(
            socket,
            h.ipsec,
            (swanctl / "x509/node.pem").read_text(),
            (swanctl / "x509ca/ca.pem").read_text(),
            h.static_peers,
        ),
    ]


def test_two_nodes_that_are_not_hubs_reach_each_other_through_runtime_connections(tools, tmp_path):
    """Issue 22: node02 and node03 render a connection and a firewall element for the hub
    (node01, seed and head) only. Before tyd tells them about each other, node02's packets get
    no IKE_SA with node03; once each applies the other's map entry through tyd's hooks (nft
    element, VICI load-conn of the shared definition), the first packet's trap brings the
    IKE_SA up, authenticated as the address the certificate names."""
    cluster, _ = load_cluster(ROOT / "chaos.yaml")
    out = render(tmp_path, cluster, "rt")
    n2, n3 = cluster.node("node02"), cluster.node("node03")
    for node, other in ((n2, n3), (n3, n2)):
        conf = (out / node.name / "etc/swanctl/swanctl.conf").read_text()
        assert "peer-node01 {" in conf and f"peer-{other.name} {{" not in conf
    with lab("rt") as the_lab:
        hosts = {n.name: the_lab.add(n.name, str(n.address)) for n in (n2, n3)}
        charons = {}
        for name, host in hosts.items():
            host.sh("nft", "-f", str(out / name / "etc/nftables.conf"))
            charons[name] = Charon(the_lab, host, out / name, tmp_path)
            charons[name].load_all()
        h2, c2, c3 = hosts["node02"], charons["node02"], charons["node03"]
        before = hosts["node03"].nft_counter("drop_input")
        h2.ping(str(n3.address))  # no trap for node03 yet: in clear, and dropped by node03
        assert hosts["node03"].nft_counter("drop_input") > before
        assert not c2.established_with(str(n3.address))
        for name, peer in (("node02", n3), ("node03", n2)):
            member = Member(peer.name, peer.address, "ab" * 32, State.ALIVE, 1, 0)
            for hook in runtime_hooks(out / name, hosts[name], charons[name].socket):
                asyncio.run(hook.add(member))
        assert f"peer-{n3.name}: IKEv2" in c2.swanctl("--list-conns").stdout
        assert (
            str(n2.address)
            in hosts["node03"].sh("nft", "list", "set", "inet", "chaos", "cluster_peers").stdout
        )

        def established() -> bool:
            h2.ping(str(n3.address))
            return c2.established_with(str(n3.address))

        wait_for(established, 30, "IKE_SA node02 -> node03 through run-time connections")
        assert c3.established_with(str(n2.address))
        assert f"authentication of '{n3.address}' with ED25519 successful" in c2.log_text()
