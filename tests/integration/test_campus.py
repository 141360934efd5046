"""The day-and-night lab's campus (builder/smoke/campus.py) with real namespaces and a real
sshd: from the campus, through the lab namespace's routing, a key logs in to a host on the
lab segment and scp copies a file off it; a firewall that takes only login_from refuses the
outsider address of the same campus; a user without a key is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.run import run, spawn, stop_processes
from builder.smoke.campus import Campus, keygen
from builder.smoke.lab import Segment, ip

pytestmark = pytest.mark.integration
HEAD = "10.99.0.11"
SSHD_CONFIG = """\
ListenAddress {head}:22
HostKey {work}/host_key
AuthorizedKeysFile {work}/keys/%u
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root nobody
Subsystem sftp internal-sftp
"""
FIREWALL = """\
table inet campus_test {
    chain input {
        type filter hook input priority filter; policy accept;
        tcp dport 22 ip saddr != { 192.0.2.0/25, 10.99.0.0/24 } counter drop
    }
}
"""


def test_a_campus_user_reaches_the_head_by_key_and_the_outsider_does_not(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for tool in ("sshd", "ssh", "scp", "ssh-keygen", "nft"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} is not installed")
    tag = str(os.getpid())
    segment = Segment(f"chaos-ctest-{tag}", "10.99.0.1/24")
    head_ns = f"chaos-chead-{tag}"
    campus = Campus(
        f"chaos-ccampus-{tag}", segment.ns, "192.0.2.10", "192.0.2.200", tmp_path / "known_hosts"
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        segment.up()
        ip("netns", "add", head_ns)
        ip("-n", head_ns, "link", "set", "lo", "up")
        ip("-n", segment.ns, "link", "add", "hv0", "type", "veth", "peer", "name", "eth0")
        ip("-n", segment.ns, "link", "set", "eth0", "netns", head_ns)
        ip("-n", segment.ns, "link", "set", "hv0", "master", "br0", "up")
        ip("-n", head_ns, "addr", "add", f"{HEAD}/24", "dev", "eth0")
        ip("-n", head_ns, "link", "set", "eth0", "up")
        ip("-n", head_ns, "route", "add", "default", "via", "10.99.0.1")
        campus.up()
        key = keygen(tmp_path / "user_key")
        (tmp_path / "keys").mkdir()
        (tmp_path / "keys" / "root").write_text(key.with_suffix(".pub").read_text())
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "host_key"])
        (tmp_path / "sshd_config").write_text(SSHD_CONFIG.format(head=HEAD, work=tmp_path))
        (tmp_path / "fw.nft").write_text(FIREWALL)
        run(["ip", "netns", "exec", head_ns, "nft", "-f", tmp_path / "fw.nft"])
        Path("/run/sshd").mkdir(exist_ok=True)
        procs.append(
            spawn(
                ["ip", "netns", "exec", head_ns, "/usr/sbin/sshd", "-D", "-e", "-f",
                 tmp_path / "sshd_config"],
                log_file=tmp_path / "sshd.log",
            )
        )  # fmt: skip
        (tmp_path / "result.txt").write_text("the job's output\n")
        for _ in range(50):
            if campus.connect(HEAD, 22, campus.campus):
                break
        first = campus.ssh(key, "root", HEAD, "echo in", strict="accept-new")
        assert first.returncode == 0 and first.stdout == b"in\n", first.stderr
        again = campus.ssh(key, "root", HEAD, "echo again")  # the host key is known now
        assert again.returncode == 0, again.stderr
        assert campus.scp(key, "root", HEAD, str(tmp_path / "result.txt"), tmp_path / "copy") == ""
        assert (tmp_path / "copy").read_text() == "the job's output\n"
        assert b"Permission denied" in campus.ssh(key, "nobody", HEAD, "true").stderr
        outsider = campus.ssh(key, "root", HEAD, "true", source=campus.outsider)
        assert outsider.returncode != 0
        assert not campus.connect(HEAD, 22, campus.outsider)
        assert campus.connect(HEAD, 22, campus.campus)  # the positive control
        counters = run(["ip", "netns", "exec", head_ns, "nft", "list", "ruleset"]).stdout
        assert b"counter packets 0 " not in counters
    finally:
        stop_processes(procs)
        campus.down()
        ip("netns", "del", head_ns, check=False)
        segment.down()
