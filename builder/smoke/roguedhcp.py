"""A rogue DHCP/TFTP server on the lab segment (scenario key `rogue_dhcp`, issue 20).

One laptop plugged into the lab's switch: a network namespace of its own on the lab bridge.
As a student would, it copies the build's public Secure Boot chain from serve over TFTP
(shim, signed GRUB, GRUB's configs, the signed kernel, the initrds: anyone on the segment can
read them), appends an overlay of its own (root autologin on tty1) to the victim's node
initrd and answers the victim's DHCP with its own dnsmasq: its address, its boot file, itself
as the TFTP server.

The rogue answers first: serve's DHCP replies to the victim's MAC are held back on the
segment (an nft rule in the lab's namespace, counted), as a laptop that answers faster, or
sits between the PC and the wall socket, would have it. Without that the lab would be a race
(this host has no netem to make serve slower): serve's offer and a plain rogue offer rank the
same in edk2's PXE (the first to arrive wins); a rogue proxyDHCP offer ranks higher and the
firmware does load shim and GRUB from it, but signed net GRUB then reads its config and
every file from the DHCP server's next-server, serve; a rogue offer saying "PXEClient" must
also answer on port 4011. Measured in this lab's first runs; the note of issue 20 has them.

The victim's TPM is registered for its node: everything the firmware loads is signed and
unchanged except that initrd, so the boot succeeds, the node asks for its certificate with a
genuine quote, and the reference refuses it: "PCR 9: an initrd this build did not make".
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from builder.image.pxe import GRUB_NET_CFG_PATH, GRUB_NET_EFI, SHIM_EFI, answer_paths
from builder.model import Cluster, Node
from builder.run import run
from builder.smoke import secureboot
from builder.smoke.firmware import Firmware
from builder.smoke.lab import Namespace, free_address, ip
from builder.smoke.secureboot import Smoke

# what the firmware prints when it takes an offer (OVMF's UefiPxeBcDxe)
SERVER_LINE = re.compile(r"Server IP address is (\d+\.\d+\.\d+\.\d+)")
# GRUB's config names the files it loads as (tftp)/PATH
TFTP_FILE = re.compile(r"\(tftp\)/(\S+)")
TFTP_BLKSIZE = "1468"  # what OVMF asks for (signed GRUB asks 1024): the copy is not timed


@dataclass
class Laptop(Namespace):
    """The attacker's machine: namespace `ns`, eth0 with `address`, a veth into the lab's
    bridge; its dnsmasq serves `root` over TFTP."""

    address: ipaddress.IPv4Interface
    root: Path

    def up(self, segment_ns: str) -> None:
        ip("netns", "add", self.ns)
        ip("-n", self.ns, "link", "set", "lo", "up")
        ip("-n", segment_ns, "link", "add", "laptop0", "type", "veth", "peer", "eth0")
        ip("-n", segment_ns, "link", "set", "eth0", "netns", self.ns)
        ip("-n", segment_ns, "link", "set", "laptop0", "master", "br0", "up")
        ip("-n", self.ns, "addr", "add", str(self.address), "dev", "eth0")
        ip("-n", self.ns, "link", "set", "eth0", "up")

    def exec(self, argv: list[str]) -> None:
        run(["ip", "netns", "exec", self.ns, *argv], timeout=120)


def laptop_address(cluster: Cluster, taken: Sequence[IPv4Address]) -> ipaddress.IPv4Interface:
    """The lowest free address of the lab's subnet (the rogue, if any, has the highest)."""
    free = free_address(cluster, taken, highest=False)
    return ipaddress.IPv4Interface(f"{free}/{cluster.network.subnet.prefixlen}")


def copy_chain(laptop: Laptop, server: str, victim: Node) -> list[str]:
    """Fetch the victim's night boot over TFTP from serve, as anyone on the segment can: the
    loaders, GRUB's configs and every file the victim's config loads. Returns their paths."""
    mac_cfg = answer_paths(victim)[2]
    wanted = [SHIM_EFI, GRUB_NET_EFI, GRUB_NET_CFG_PATH, mac_cfg]
    for path in wanted:
        fetch(laptop, server, path)
    loads = TFTP_FILE.findall((laptop.root / mac_cfg).read_text())
    for path in loads:
        fetch(laptop, server, path)
    return [*wanted, *loads]


def fetch(laptop: Laptop, server: str, path: str) -> None:
    dest = laptop.root / path
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = f"tftp://{server}/{path}"
    laptop.exec(["curl", "-sSf", "--tftp-blksize", TFTP_BLKSIZE, "-o", str(dest), url])


def dnsmasq_conf(cluster: Cluster, laptop: Laptop, victim: Node) -> str:
    """The attacker's DHCP/TFTP server: the victim's own address (known from the lab's
    public chaos.yaml) and the Secure Boot loader, as serve answers it."""
    net = cluster.network.subnet
    return "\n".join(
        [
            "# the rogue laptop's dnsmasq (smoke lab, builder/smoke/roguedhcp.py)",
            "port=0",
            "interface=eth0",
            "bind-interfaces",
            "log-dhcp",
            "log-facility=-",
            "keep-in-foreground",
            "leasefile-ro",
            "enable-tftp",
            f"tftp-root={laptop.root}",
            f"dhcp-range={net.network_address},static,{net.netmask},10m",
            f"dhcp-host={victim.mac},{victim.address}",
            f"dhcp-boot={SHIM_EFI}",
            "",
        ]
    )


# serve's DHCP answers to the victim, held back on the lab segment while the rogue answers
HOLD_TABLE = "chaos_smoke_rogue_dhcp"
CHADDR_BITS = (8 + 28) * 8  # the client's MAC: after the UDP header and 28 bytes of BOOTP


def hold_back_rules(mac: str) -> str:
    """An nft table for the lab's namespace: serve's DHCP replies (UDP from port 67) whose
    client hardware address is `mac` are dropped and counted."""
    hexmac = "0x" + mac.replace(":", "").lower()
    return (
        f"table inet {HOLD_TABLE} {{\n"
        "  chain out {\n"
        "    type filter hook output priority 0;\n"
        f"    udp sport 67 @th,{CHADDR_BITS},48 {hexmac} counter drop\n"
        "  }\n"
        "}\n"
    )


def hold_back(segment_ns: str, victim: Node) -> None:
    rules = hold_back_rules(victim.mac).encode()
    run(["ip", "netns", "exec", segment_ns, "nft", "-f", "-"], input=rules, timeout=30)


def release(segment_ns: str) -> str:
    """Drop the hold-back table; returns its counter line (how many answers it held)."""
    out = run(
        ["ip", "netns", "exec", segment_ns, "nft", "list", "table", "inet", HOLD_TABLE],
        timeout=30,
        check=False,
    ).stdout.decode()
    run(
        ["ip", "netns", "exec", segment_ns, "nft", "delete", "table", "inet", HOLD_TABLE],
        timeout=30,
        check=False,
    )
    found = re.search(r"counter packets (\d+)", out)
    return found.group(1) if found else "0"


def start(smoke: Smoke, segment_ns: str, victim: Node, taken: Sequence[IPv4Address]) -> Laptop:
    work = smoke.results / "rogue-dhcp"
    laptop = Laptop(f"{segment_ns}-laptop", laptop_address(smoke.cluster, taken), work / "tftp")
    laptop.root.mkdir(parents=True, exist_ok=True)
    laptop.up(segment_ns)
    assert smoke.cluster.serve.address is not None
    files = copy_chain(laptop, str(smoke.cluster.serve.address), victim)
    initrd = laptop.root / "nodes" / f"{victim.name}.cpio"
    secureboot.append_attacker_overlay(initrd)
    conf = work / "dnsmasq.conf"
    conf.write_text(dnsmasq_conf(smoke.cluster, laptop, victim))
    run(["dnsmasq", "--test", f"--conf-file={conf}"], timeout=30)
    laptop.spawn(["dnsmasq", f"--conf-file={conf}", "--user=root"], work / "dnsmasq.log")
    smoke.report.phase(
        f"rogue laptop {laptop.address.ip} on the segment: copied {len(files)} files from "
        f"serve over TFTP, appended its overlay to {initrd.name}, dnsmasq answers {victim.mac}"
    )
    return laptop


def run_lab(
    smoke: Smoke, segment_ns: str, taken: Sequence[IPv4Address], watchers: Sequence[str]
) -> None:
    """The rogue answers the victim; the victim boots the attacker's initrd on its registered
    TPM, is refused, and holds nothing (`watchers`, members already up, never list it); then
    the laptop leaves the segment."""
    lab = smoke.scenario.rogue_dhcp
    assert lab is not None
    victim = smoke.cluster.node(lab.victim)
    secureboot.register(smoke, [victim.name])
    laptop = start(smoke, segment_ns, victim, taken)
    hold_back(segment_ns, victim)
    try:
        secureboot.check_refused(
            smoke,
            victim.name,
            Firmware.SECURE_BOOT,
            f"PCR 9: an initrd this build did not make for {victim.name}",
        )
        console = smoke.guests[victim.name].console.read_text(errors="replace")
        servers = SERVER_LINE.findall(console)
        smoke.report.check(
            f"{victim.name}: its firmware took the rogue's offer (the boot server was "
            f"{laptop.address.ip}, not serve)",
            bool(servers) and servers[-1] == str(laptop.address.ip),
            f"boot servers on the console: {', '.join(servers) or 'none'}",
        )
        log = (laptop.root.parent / "dnsmasq.log").read_text(errors="replace")
        smoke.report.check(
            f"{victim.name}: loaded the attacker's initrd from the laptop over TFTP",
            f"sent {laptop.root}/nodes/{victim.name}.cpio" in log,
        )
        smoke.report.check(
            f"{victim.name}: booted the signed chain with Secure Boot on",
            secureboot.KERNEL_SECURE in secureboot.kernel_log(smoke, victim.name),
        )
        never_a_member(smoke, victim.name, watchers)
    finally:
        held = release(segment_ns)
        laptop.down()
    smoke.report.phase(f"serve's DHCP answers to {victim.name} held back on the segment: {held}")


# where a member would show up: tyd's map on every member, Slurm's node list on the head
WHERE = {
    "tyd map": ["python3", "-m", "tyd", "status"],
    "Slurm": ["sinfo", "-h", "-N", "-o", "%N"],
}
NEVER_WITHIN = 30.0  # a node with a certificate is in both within seconds of READY


def never_a_member(smoke: Smoke, victim: str, watchers: Sequence[str]) -> None:
    """Watched for NEVER_WITHIN seconds after the refusal: the victim shows up in no map
    (each watcher's tyd) and not in Slurm (the head's sinfo, when the head is a watcher)."""
    head = smoke.cluster.heads[0].name  # slurmctld's node
    seen: dict[str, str] = {}
    deadline = time.monotonic() + NEVER_WITHIN
    while time.monotonic() < deadline and not seen:
        for member in watchers:
            for where, argv in WHERE.items():
                if where == "Slurm" and member != head:
                    continue
                _, out = smoke.guests[member].exec(argv)
                if re.search(rf"\b{re.escape(victim)}\b", out):
                    seen[f"{where} on {member}"] = out.strip()[-200:]
        time.sleep(3)
    smoke.report.check(
        f"{victim}: in no tyd map and not in Slurm ({NEVER_WITHIN:.0f}s watched, "
        f"{', '.join(watchers)})",
        not seen,
        "; ".join(f"{k}: {v}" for k, v in seen.items()),
    )
