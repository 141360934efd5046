"""The always-on head's firewall with real packets: sshd only from login_from, NFS only from
members through IPsec, everything else dropped and counted; sshd's and sysusers' own checks
of the rendered files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from chaostest import ROOT, issue_all
from netlab import lab, need_root_tools

from builder.config import load_cluster_text
from builder.pki import Pki
from builder.render import render_cluster

pytestmark = pytest.mark.integration

LISTEN = (
    "import socket,sys,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)\n"
    "print('listening', flush=True)\n"
    "while True:\n    c, _ = s.accept(); c.close()\n"
)


@pytest.fixture
def head_tree(tmp_path):
    # the campus is the upper half of the lab segment here (as in proxy mode on a campus LAN)
    text = (
        (ROOT / "tests/golden/head.yaml")
        .read_text()
        .replace("login_from: [192.0.2.0/24, 198.51.100.0/25]", "login_from: [10.99.0.128/25]")
    )
    cluster = load_cluster_text(text, "head.yaml")
    pki = Pki(tmp_path / "pki")
    issue_all(cluster, pki)
    render_cluster(cluster, pki, tmp_path / "nodes")
    return tmp_path / "nodes"


def test_sshd_only_from_login_from_and_nfs_never_from_outside(head_tree):
    need_root_tools("nft", "python3")
    with lab("head") as the_lab:
        head = the_lab.add("head", "10.99.0.10")
        campus = the_lab.add("campus", "10.99.0.200")
        outsider = the_lab.add("outsider", "10.99.0.100")
        member = the_lab.add("member", "10.99.0.21")  # a member's address, in clear
        for port in (22, 2049):
            proc = subprocess.Popen(
                ["ip", "netns", "exec", head.ns, "python3", "-c", LISTEN, "10.99.0.10", str(port)],
                stdout=subprocess.PIPE,
            )
            the_lab.procs.append(proc)  # type: ignore[arg-type]
            assert proc.stdout is not None and proc.stdout.readline() == b"listening\n"
        # before the firewall everyone reaches both ports (the checks below can fail)
        assert outsider.tcp_connect("10.99.0.10", 22) and outsider.tcp_connect("10.99.0.10", 2049)
        head.sh("nft", "-f", str(head_tree / "head/etc/nftables.conf"))
        ssh_out, nfs_out = (
            head.nft_counter("drop_ssh_outsider"),
            head.nft_counter("drop_nfs_outsider"),
        )
        plain = head.nft_counter("drop_member_plaintext")
        assert campus.tcp_connect("10.99.0.10", 22)
        assert not campus.tcp_connect("10.99.0.10", 2049)
        assert not outsider.tcp_connect("10.99.0.10", 22)
        assert not outsider.tcp_connect("10.99.0.10", 2049)
        assert not member.tcp_connect("10.99.0.10", 22)
        assert not member.tcp_connect("10.99.0.10", 2049)
        assert head.nft_counter("drop_ssh_outsider") > ssh_out
        assert head.nft_counter("drop_nfs_outsider") > nfs_out
        assert head.nft_counter("drop_member_plaintext") > plain


def test_members_never_reach_sshd_even_through_ipsec(head_tree):
    """The host kernel has no ESP, so this one is the rule order: the member drop comes before
    the login_from accept and before the accept of authenticated members."""
    rules = (head_tree / "head/etc/nftables.conf").read_text().splitlines()
    at = {
        name: next(i for i, r in enumerate(rules) if name in r)
        for name in (
            '"drop_ssh_member"',
            "sshd from login_from",
            "authenticated members",
            '"drop_ssh_outsider"',
            "ct state established",
        )
    }
    assert at["ct state established"] < at['"drop_ssh_member"'] < at["sshd from login_from"]
    assert at["sshd from login_from"] < at['"drop_ssh_outsider"'] < at["authenticated members"]


def test_sshd_accepts_the_rendered_config(head_tree, tmp_path):
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not shutil.which(sshd):
        pytest.skip("openssh-server is not installed (make setup installs it)")
    key = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # the host key lives on the state disk, made there at the first boot: a test key here
    rendered = (head_tree / "head/etc/ssh/sshd_config.d/chaos.conf").read_text()
    assert "HostKey /var/lib/chaos/state/ssh/ssh_host_ed25519_key\n" in rendered
    conf = tmp_path / "sshd_config"
    conf.write_text(rendered.replace("/var/lib/chaos/state/ssh/ssh_host_ed25519_key", str(key)))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd -t wants its privsep dir
    r = subprocess.run([sshd, "-t", "-f", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    shown = subprocess.run(
        [sshd, "-T", "-f", str(conf), "-C", "user=alice,host=x,addr=192.0.2.9"],
        capture_output=True,
        text=True,
    ).stdout
    for line in (
        "permitrootlogin no",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "authenticationmethods publickey",
        "allowusers alice",
        "allowusers bob",
        "listenaddress 10.99.0.10:22",
    ):
        assert line in shown, line


def test_sysusers_makes_locked_accounts(head_tree, tmp_path):
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("no systemd-sysusers on this host")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    conf = head_tree / "pc1/etc/chaos/users.conf"
    subprocess.run([sysusers, f"--root={root}", str(conf)], check=True, capture_output=True)
    passwd = (root / "etc/passwd").read_text()
    assert "alice:x:1001:1001:chaos user alice:/home/alice:/bin/bash" in passwd
    assert "bob:x:1002:1002:" in passwd
    shadow = {
        ln.split(":")[0]: ln.split(":")[1] for ln in (root / "etc/shadow").read_text().splitlines()
    }
    assert shadow["alice"].startswith("!") and shadow["bob"].startswith("!")
    assert "alice:x:1001:" in (root / "etc/group").read_text()
