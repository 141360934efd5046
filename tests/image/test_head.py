"""The always-on head boots the image for real: a VM with a blank second disk
(serial chaos-state, so /dev/disk/by-id/virtio-chaos-state) formats it, makes its ssh host
key there, exports the homes over NFSv4, and its sshd lets a user in by key from login_from;
after a power cycle the disk is kept, with the same host key and the user's files.

QEMU user networking (restrict=on): ssh reaches the guest through a forward on 127.0.0.1,
so the connection arrives from QEMU's host address, 10.99.0.2, the only login_from network.
No enrollment service answers (no TPM), which the head's sshd, disk and NFS do not need.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from imagetest import CACHE_DIR, NOW, snapshot_repo

from builder import mungekey
from builder.config import load_cluster
from builder.image.build import build_image
from builder.image.qemu import Machine, probe_accel
from builder.pki import issue_all, pki_at
from builder.render import render_cluster
from builder.run import spawn, stop_processes
from chaosnode import daytime

pytestmark = pytest.mark.image
HEAD_MAC = "52:54:00:00:01:01"
HEAD_ADDRESS = "10.99.0.10"
BOOT_TIMEOUT = 420.0
CLUSTER = """\
cluster: {{name: headtest, domain: lab.test}}
network: {{subnet: 10.99.0.0/24, gateway: 10.99.0.2}}
serve: {{address: 10.99.0.2}}
login_from: [10.99.0.2/32]
users:
  - {{name: alice, uid: 1001, gid: 1001, ssh_keys: ["{alice}"]}}
  - {{name: bob, uid: 1002, gid: 1002}}
nodes:
  - {{name: head, mac: "{mac}", address: {address}, roles: [head],
     always_on: true, state_disk: /dev/disk/by-id/virtio-chaos-state}}
  - {{name: pc1, mac: "52:54:00:00:01:02", address: 10.99.0.21}}
"""


@dataclass(frozen=True)
class Head:
    work: Path
    kernel: Path
    initrd: Path
    disk: Path
    alice: Path
    stranger: Path
    accel: list[str]


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Head:
    if not shutil.which("ssh-keygen") or not shutil.which("ssh"):
        pytest.skip("needs ssh and ssh-keygen (openssh-client)")
    work = tmp_path_factory.mktemp("head")
    alice, stranger = keygen(work / "alice"), keygen(work / "stranger")
    (work / "chaos.yaml").write_text(
        CLUSTER.format(
            alice=(work / "alice.pub").read_text().strip(), mac=HEAD_MAC, address=HEAD_ADDRESS
        )
    )
    cluster = load_cluster(work / "chaos.yaml")[0]
    pki = pki_at(cluster, work / "pki")
    issue_all(cluster, pki, NOW)
    mungekey.ensure(pki.paths.root)
    render_cluster(cluster, pki, work / "nodes")
    out = work / "out"
    build_image(cluster, work / "nodes", out, CACHE_DIR, repo_dir=snapshot_repo(work / "repo"))
    initrd = work / "head-initrd.img"  # what iPXE loads: the base, then the head's cpio
    initrd.write_bytes(
        (out / "pxe/initrd.img").read_bytes() + (out / "pxe/nodes/head.cpio").read_bytes()
    )
    disk = work / "state.img"
    with disk.open("wb") as f:
        f.truncate(256 << 20)
    return Head(
        work,
        out / "pxe/vmlinuz",
        initrd,
        disk,
        alice,
        stranger,
        probe_accel(out / "pxe/vmlinuz", work),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Vm:
    """The head VM, running until stopped; its console in a file."""

    def __init__(self, head: Head, name: str) -> None:
        self.port = free_port()
        self.console = head.work / f"{name}.console"
        self.agent_path = head.work / f"{name}.agent"
        machine = Machine(
            accel=head.accel,
            mac=HEAD_MAC,
            memory_mb=1024,
            kernel=head.kernel,
            initrd=head.initrd,
            append="console=tty0 console=ttyS0,115200",
            disks=[head.disk],
            disk_serials=("chaos-state",),
            user_net=(
                "net=10.99.0.0/24",
                "host=10.99.0.2",
                f"hostfwd=tcp:127.0.0.1:{self.port}-{HEAD_ADDRESS}:22",
            ),
            agent=self.agent_path,
        )
        self.proc = spawn(machine.argv(), log_file=self.console)
        self.start = time.monotonic()

    def text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def wait_for(self, pattern: str, timeout: float = BOOT_TIMEOUT) -> re.Match[str]:
        while time.monotonic() - self.start < timeout:
            if found := re.search(pattern, self.text()):
                return found
            assert self.proc.poll() is None, f"QEMU exited:\n{self.text()[-3000:]}"
            time.sleep(1)
        raise AssertionError(f"no {pattern!r} on the console:\n{self.text()[-4000:]}")

    def ssh(
        self, key: Path, user: str, command: str, known: Path, check_host: str = "accept-new"
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "ssh",
                "-F",
                "none",
                "-i",
                str(key),
                "-p",
                str(self.port),
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=20",
                # each boot forwards another port: known_hosts names the head, not the port
                "-o",
                "HostKeyAlias=chaos-head",
                "-o",
                f"StrictHostKeyChecking={check_host}",
                "-o",
                f"UserKnownHostsFile={known}",
                f"{user}@127.0.0.1",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def ssh_until(
        self, key: Path, user: str, command: str, known: Path, check_host: str = "accept-new"
    ) -> subprocess.CompletedProcess[str]:
        """sshd comes up a while after the console's last line: retry until it answers."""
        while True:
            result = self.ssh(key, user, command, known, check_host)
            if (
                result.returncode == 0
                or "Permission denied" in result.stderr
                or "Host key verification failed" in result.stderr
            ):
                return result
            if time.monotonic() - self.start > BOOT_TIMEOUT:
                return result
            time.sleep(3)

    def agent(self, *argv: str) -> str:
        """argv as root in the guest, through chaosnode.agent (the test's port only)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(90)
            sock.connect(str(self.agent_path))
            sock.sendall(json.dumps({"id": 1, "argv": list(argv), "timeout": 60}).encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(65536)
                assert chunk, f"the agent closed the connection on {argv}"
                reply += chunk
        answer = json.loads(reply)
        return f"{answer['out']}{answer['err']}"

    def stop(self) -> None:
        stop_processes([self.proc])


@pytest.fixture(scope="module")
def first_boot(head: Head) -> Iterator[tuple[Vm, Path]]:
    vm = Vm(head, "first-boot")
    try:
        yield vm, head.work / "known_hosts"
    finally:
        vm.stop()


EXPECT = (
    'id -un; stat -c %U:%a "$HOME"; findmnt -no FSTYPE,OPTIONS /var/lib/chaos/state; '
    'echo from-alice > ~/kept.txt; echo "$SQUEUE_FORMAT"'
)


def test_a_blank_state_disk_is_formatted_and_sshd_lets_alice_in(
    first_boot: tuple[Vm, Path], head: Head
) -> None:
    vm, known = first_boot
    vm.wait_for(r"chaos-statedisk: /dev/vd[a-z]: formatted \(blank")
    vm.wait_for(r"chaos-statedisk: made the ssh host key")
    result = vm.ssh_until(head.alice, "alice", EXPECT, known)
    assert result.returncode == 0, result.stderr + vm.text()[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "alice"
    assert lines[1] == "alice:700"
    assert lines[2].startswith("ext4 ") and "nodev" in lines[2] and "nosuid" in lines[2]
    assert lines[3] == daytime.SQUEUE_FORMAT  # squeue shows the daytime pending reason
    print(f"head: first boot to alice's ssh login {time.monotonic() - vm.start:.0f} s")


def test_the_homes_are_exported_over_nfsv4_only(first_boot: tuple[Vm, Path], head: Head) -> None:
    vm, known = first_boot
    assert vm.ssh_until(head.alice, "alice", "true", known).returncode == 0  # booted
    assert vm.agent("systemctl", "is-active", "ssh", "nfs-server", "chaos-statedisk").split() == [
        "active",
        "active",
        "active",
    ]
    exports = vm.agent("exportfs", "-v")
    assert re.search(r"/var/lib/chaos/state/home\s+10\.99\.0\.21\(\S*root_squash", exports), exports
    versions = vm.agent("cat", "/proc/fs/nfsd/versions").split()
    assert "-3" in versions and "+4" in versions, versions
    listening = {
        line.split()[3].rsplit(":", 1)[1]
        for line in vm.agent("ss", "-Htln").splitlines()
        if line.strip()
    }
    assert listening == {"22", "2049"}, listening  # no rpcbind, mountd or statd port


def test_sshd_refuses_keys_it_was_not_given(first_boot: tuple[Vm, Path], head: Head) -> None:
    vm, known = first_boot
    assert vm.ssh_until(head.alice, "alice", "true", known).returncode == 0  # sshd is up
    for key, user in (
        (head.stranger, "alice"),
        (head.alice, "bob"),
        (head.alice, "root"),
        (head.stranger, "bob"),
    ):
        result = vm.ssh(key, user, "id", known)
        assert result.returncode == 255, (user, result.stdout)
        assert "Permission denied (publickey)" in result.stderr, (user, result.stderr)


def test_no_password_and_no_other_service_is_offered(
    first_boot: tuple[Vm, Path], head: Head
) -> None:
    vm, known = first_boot
    result = subprocess.run(
        [
            "ssh",
            "-F",
            "none",
            "-p",
            str(vm.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "HostKeyAlias=chaos-head",
            "alice@127.0.0.1",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr, result.stderr


def test_a_power_cycle_keeps_the_disk_the_host_key_and_the_files(
    first_boot: tuple[Vm, Path], head: Head
) -> None:
    vm, known = first_boot
    assert vm.ssh_until(head.alice, "alice", "sync", known).returncode == 0
    vm.stop()  # pulled plug: QEMU killed, no shutdown
    again = Vm(head, "second-boot")
    try:
        again.wait_for(r"chaos-statedisk: /dev/vd[a-z]: kept \(chaos's own ext4")
        assert "made the ssh host key" not in again.text()
        # the known host key from the first boot must match (strict checking)
        result = again.ssh_until(head.alice, "alice", "cat ~/kept.txt", known, "yes")
        assert result.returncode == 0, result.stderr + again.text()[-3000:]
        assert result.stdout.strip() == "from-alice"
    finally:
        again.stop()
