"""`chaos-build smoke`: boot a QEMU lab from the built artifacts and check the cluster.

Flow: build (cached base) -> private segment -> serve (dnsmasq + HTTP, isolated mode) ->
capture on the bridge -> boot the members but the last together (the first is the seed
Philip) -> the last (it joins through every member) with the rogue beside it -> data checks
-> wire checks -> power-off removal -> evidence -> teardown (also on failure and Ctrl-C).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import yaml

from builder.config import load_cluster
from builder.enroll.registry import PENDING_FILE, PendingStore, approve, registry_path
from builder.errors import ChaosError
from builder.image import cpio
from builder.image.audit import secrets_in
from builder.image.build import build_image
from builder.image.pxe import kernel_cmdline
from builder.image.qemu import probe_accel
from builder.model import Cluster, Node
from builder.mungekey import known_secrets
from builder.night import night_of
from builder.night.model import Morning, NightModel, ScheduleSection
from builder.pki import ensure_ca, pki_for
from builder.reference import plain
from builder.render import render_cluster
from builder.run import process_failure, run
from builder.smoke import admin_checks, dayandnight, roguedhcp, secureboot, tpms
from builder.smoke.dayos import DAY_OS_MARKER, boot_sector
from builder.smoke.dhcplog import last_answer
from builder.smoke.firmware import Firmware
from builder.smoke.lab import Guest, Segment, free_address, make_disk, need_root, sha256
from builder.smoke.scenario import ROGUE_KINDS, Check, Scenario, WireCheck, fit, spare_node
from tyd.exports import LIVE

from ..security.model import SecurityModel

# the traffic helper on the nodes (chaosnode.probe), run through the agent
PROBE = ("python3", "-m", "chaosnode.probe")

ROGUE_MAC = "52:54:00:66:66:66"
TFTP_SCAN_MAX = 4 * 1024 * 1024  # bigger files are fetched over HTTP only (the same bytes)
# the rogue's enrollment client saying it is not registered (and showing its EK hash)
ROGUE_REFUSED = re.compile(r"chaos-enroll: this machine is not registered as \S+: TPM EK \S+")
# a stranger (a MAC and a name the cluster does not have) is refused as no node at all
STRANGER_REFUSED = re.compile(r"chaos-enroll: refused: unknown_node: .*")
BOOT_TIMEOUT = 420.0
SERVE_TIMEOUT = 60.0
# a wire check's listener lives this long; its sender tries this often before giving up
WIRE_LISTEN_SECONDS = 90
WIRE_TRIES = 5
# after the night's end: drain, LEAVE, reboot, PXE, the day OS's marker
MORNING_TIMEOUT = 300.0
EVIDENCE = {
    "swanctl-sas.txt": ["swanctl", "--list-sas"],
    "xfrm-state.txt": ["ip", "xfrm", "state"],
    "nft-ruleset.txt": ["nft", "list", "ruleset"],
    "tyd-status.txt": ["python3", "-m", "tyd", "status"],
    "journal.txt": ["journalctl", "-b", "--no-pager", "-n", "400"],
    "enroll.txt": ["journalctl", "-b", "-u", "chaos-enroll", "--no-pager", "-o", "short-monotonic"],
    "slurm.txt": [
        "sh",
        "-c",
        "sinfo -N -l; squeue; scontrol show nodes --oneliner; "
        "journalctl -b -u chaos-slurm -u munge -u slurmctld -u slurmd --no-pager "
        "-n 300",
    ],
    "boot-time.txt": [
        "sh",
        "-c",
        "systemd-analyze time; systemd-analyze critical-chain "
        "chaos-selftest.service; systemd-analyze blame | head -25",
    ],
}


class Report:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []
        self.start = time.monotonic()

    def phase(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {text}", flush=True)

    def check(self, title: str, ok: bool, detail: str = "") -> bool:
        self.results.append((title, ok, detail))
        print(
            f"{'PASS' if ok else 'FAIL'}  {title}" + (f"  ({detail})" if detail else ""), flush=True
        )
        return ok

    @property
    def failed(self) -> int:
        return sum(1 for _, ok, _ in self.results if not ok)


def lab_cluster(cluster: Cluster, results: Path) -> Cluster:
    """The cluster as the lab runs it: PKI and TPM registry in the results folder, and the
    lab's server as serve.address when the cluster file names none."""
    security = dataclasses.replace(
        cluster.section(SecurityModel).security,
        pki_dir=str((results / "pki").resolve()),
        tpm_registry=str((results / "tpm-registry.yaml").resolve()),
    )
    address = cluster.serve.address
    if address is None:
        net = cluster.network
        taken = {n.address for n in cluster.nodes}
        address = net.gateway or next(a for a in net.subnet.hosts() if a not in taken)
    serve = dataclasses.replace(cluster.serve, address=address)
    return dataclasses.replace(cluster.with_section(SecurityModel(security=security)), serve=serve)


def rogue_cluster(cluster: Cluster, impersonates: str | None) -> tuple[Cluster, Node]:
    """The rogue boots the cluster's own public artifacts with a TPM nobody registered: as
    a spare node (its MAC, so serve hands it that node's settings) or, without one, as a
    stranger at an address no member has."""
    if impersonates:
        return cluster, cluster.node(impersonates)
    rogue = Node(name="rogue", mac=ROGUE_MAC, address=free_address(cluster))
    return dataclasses.replace(cluster, nodes=(*cluster.nodes, rogue)), rogue


class Smoke:
    def __init__(
        self,
        scenario: Scenario,
        boot: str,
        results: Path,
        cache: Path,
        nodes: int | None,
        keep: bool = False,
    ) -> None:
        self.scenario = scenario
        self.keep = keep
        self.boot_mode = boot
        self.results = results.absolute()  # every child (serve, QEMU, swtpm) gets it
        self.cache = cache.absolute()
        self.children: list[tuple[subprocess.Popen[bytes], str, Path]] = []
        self.report = Report()
        cluster, _ = load_cluster(scenario.config)
        fit(scenario, cluster, scenario.config)
        self.cluster = lab_cluster(cluster, results)
        self.config = results / "chaos.yaml"
        self.members = list(scenario.boot[:nodes] if nodes else scenario.boot)
        assert self.cluster.serve.address is not None
        self.server = self.cluster.serve.address
        self.segment = Segment(
            f"chaos-smoke-{os.getpid()}", f"{self.server}/{self.cluster.network.subnet.prefixlen}"
        )
        self.guests: dict[str, Guest] = {}
        self.disks: dict[str, str] = {}
        self.boot_timeout = BOOT_TIMEOUT
        self.day_and_night = scenario.day_and_night
        if self.day_and_night is not None:  # the head is no lab PC: members are the PCs
            self.members = [m for m in self.members if m != self.day_and_night.head]
            self.cluster = dayandnight.with_user_key(self.cluster, self.day_and_night, results)

    @property
    def nights(self) -> bool:
        """Whether this lab has a schedule (VMs reboot and their disks boot the day OS)."""
        return self.scenario.night_ends_after is not None or self.day_and_night is not None

    # -- build ----------------------------------------------------------------------
    def build(self) -> None:
        self.report.phase("build: PKI, render, image (base from cache when unchanged)")
        self.build_once()
        if self.day_and_night is not None:
            self.cluster = dayandnight.nights_cluster(self.cluster, self.day_and_night)
            windows = self.cluster.section(NightModel).schedule.windows
            self.report.phase(
                f"nights: schedule {', '.join(windows)} UTC; rebuilding the node files"
            )
            self.build_once()
        if self.scenario.night_ends_after is not None:
            # the night ends ends_after seconds from now: a first build warms the base cache,
            # the second (node files only) carries the window counted from its own start
            self.cluster = night_cluster(self.cluster, self.scenario.night_ends_after)
            self.night_end = night_end(self.cluster)
            self.report.phase(
                f"night: schedule {self.cluster.section(NightModel).schedule.windows[0]} UTC, ends "
                f"{self.night_end:%H:%M:%S}; rebuilding the node files"
            )
            self.build_once()
        self.register_tpms()

    def build_once(self) -> None:
        self.config.write_text(yaml.safe_dump(plain(self.cluster), sort_keys=False))
        pki = pki_for(self.cluster, self.config)
        ensure_ca(self.cluster, pki, dt.datetime.now(dt.UTC))
        nodes_dir = self.results / "nodes"
        render_cluster(self.cluster, pki, nodes_dir)
        self.out = self.results / "out"
        build_image(self.cluster, nodes_dir, self.out, self.cache)
        if self.scenario.rogue is not None:
            spare = spare_node(self.scenario, self.cluster)
            rc, node = rogue_cluster(self.cluster, spare or None)
            self.rogue_node = node
            self.rogue_boot = "pxe" if spare else "kernel"
            if not spare:  # a stranger: the same base with public settings of its own
                rogue_nodes = self.results / "rogue-nodes"
                render_cluster(rc, pki, rogue_nodes, only=node.name)
                base = (self.out / "pxe" / "initrd.img").read_bytes()
                overlay = cpio.pack_tree(rogue_nodes / node.name, int(time.time()))
                self.rogue_initrd = self.results / "rogue-initrd.img"
                self.rogue_initrd.write_bytes(base + b"\0" * (-len(base) % 4) + overlay)

    def register_tpms(self) -> None:
        """Each member's TPM is registered for it (what an admin does on the enrollment
        night); the rogue's target gets a TPM of a machine that never boots, and the rogue
        a TPM of its own that nobody registered."""
        registry = registry_path(self.cluster, self.config)
        registry.unlink(missing_ok=True)
        spare = spare_node(self.scenario, self.cluster)
        head = [self.day_and_night.head] if self.day_and_night else []
        for name in [*head, *self.members, *([spare] if spare else [])]:
            booted = name in self.members or name in head
            state = self.results / (name if booted else f"{name}-spare") / "tpm"
            approve(registry, self.cluster, tpms.ek_hash_of(state), name, comment="smoke lab swtpm")
        self.report.phase(
            f"TPM registry {registry}: {len(self.members)} members"
            + (f", the always-on head {head[0]}" if head else "")
            + (f", {spare} (a machine that never boots)" if spare else "")
        )

    # -- lab ------------------------------------------------------------------------
    def start_lab(self) -> None:
        self.report.phase(f"lab: namespace {self.segment.ns}, bridge br0 {self.segment.server}")
        self.segment.up()
        serve_log, tcpdump_log = self.results / "serve.log", self.results / "tcpdump.log"
        serve = self.segment.spawn(
            [
                sys.executable,
                "-m",
                "builder.cli",
                "serve",
                "-c",
                str(self.config),
                "--pxe",
                str(self.out / "pxe"),
                "--interface",
                "br0",
                "--mode",
                "isolated",
                "--run-dir",
                str(self.results / "serve"),
            ],
            serve_log,
        )
        self.pcap = self.results / "wire.pcap"
        tcpdump = self.segment.spawn(
            ["tcpdump", "-i", "br0", "-nn", "-U", "-s", "256", "-w", str(self.pcap)], tcpdump_log
        )
        self.children = [(serve, "serve", serve_log), (tcpdump, "tcpdump", tcpdump_log)]
        self.accel = probe_accel(self.out / "pxe" / "vmlinuz", self.results)
        self.report.phase(f"qemu: {' '.join(self.accel)}")
        self.wait_for_serve()

    def wait_for_serve(self) -> None:
        """serve answers HTTP before anything fetches from it (on a loaded host it may take
        longer than a second to set up its served tree, dnsmasq and nginx)."""
        url = f"http://{self.server}:{self.cluster.serve.http_port}/boot.ipxe"
        deadline = time.monotonic() + SERVE_TIMEOUT
        while run(
            [
                "ip",
                "netns",
                "exec",
                self.segment.ns,
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                url,
            ],
            check=False,
            timeout=30,
            quiet=True,
        ).returncode:
            self.watch()
            if time.monotonic() > deadline:
                raise ChaosError(
                    f"serve did not answer {url} within {SERVE_TIMEOUT:.0f}s; "
                    f"see {self.results / 'serve.log'}"
                )
            time.sleep(0.5)

    def watch(self) -> None:
        """Every wait calls this: a supervised child of the lab (serve, tcpdump) that ended
        fails the run at once, with that child's own error, instead of a wait running out."""
        for proc, name, log_file in self.children:
            if proc.poll() is not None:
                raise process_failure(proc, name, log_file)

    def check_served_files(self) -> None:
        """What anyone on the lab segment can fetch holds no private key: every file serve
        offers, fetched from inside the segment over HTTP and (the small ones) over TFTP."""
        pxe = self.out / "pxe"
        files = sorted(p.relative_to(pxe).as_posix() for p in pxe.rglob("*") if p.is_file())
        fetched: dict[str, bytes] = {}
        failed = []
        for rel in files:
            urls = [f"http://{self.server}:{self.cluster.serve.http_port}/{rel}"]
            if (pxe / rel).stat().st_size <= TFTP_SCAN_MAX:
                urls.append(f"tftp://{self.server}/{rel}")
            for url in urls:
                r = run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        self.segment.ns,
                        "curl",
                        "-sf",
                        "--max-time",
                        "60",
                        url,
                    ],
                    check=False,
                    timeout=90,
                    quiet=True,
                )
                if r.returncode != 0:
                    failed.append(url)
                fetched[url] = r.stdout
        known = known_secrets(pki_for(self.cluster, self.config).paths.root)
        leaks = {url: found for url, data in fetched.items() if (found := secrets_in(data, known))}
        self.report.check(
            f"served files hold no private key{' nor the munge key' if known else ''}"
            f" ({len(fetched)} fetches of "
            f"{len(files)} files over HTTP and TFTP)",
            not leaks and not failed,
            f"leaks: {leaks}, failed: {failed[:5]}" if leaks or failed else "",
        )

    def start_guest(
        self,
        name: str,
        mac: str,
        boot: str,
        media: dict[str, Path],
        firmware: Firmware | None = None,
        state_disk: Path | None = None,
    ) -> Guest:
        """A VM powered on; its disk is made on its first start only (a later start is a
        power cycle of the same machine, with the same disk and TPM)."""
        workdir = self.results / name
        workdir.mkdir(parents=True, exist_ok=True)
        night = self.nights
        guest = Guest(
            name,
            mac,
            workdir,
            workdir / "disk.img",
            reboot=night,
            watch=self.watch,
            firmware=firmware or secureboot.firmware_for(self),
            state_disk=state_disk,
        )
        if name in self.disks:
            guest.console.rename(workdir / f"console-{time.time_ns()}.log")
        else:
            self.disks[name] = make_disk(guest.disk, boot_sector=boot_sector() if night else b"")
        guest.tpm_proc = tpms.spawn_for_qemu(
            guest.tpm_state, guest.tpm_socket, workdir / "swtpm.log"
        )
        tap = self.segment.add_tap()
        guest.proc = self.segment.spawn(
            guest.argv(self.accel, tap, boot, media), workdir / "qemu.log"
        )
        guest.started = time.monotonic()
        self.guests[name] = guest
        return guest

    def boot_members(self, together: bool = False) -> None:
        """The members but the last power on together (the first is the seed Philip: only a
        seed founds, the others knock until it answers), then the last, which joins through
        every member, with the rogue beside it; or all at once as a lab does at 5 pm
        (together=True)."""
        media = {"iso": self.out / "chaos.iso"}
        *first, last = self.members
        batches = [list(self.members)] if together else [first, [last]]
        for batch in [b for b in batches if b]:
            started: list[Guest] = []
            for name in batch:
                node = self.cluster.node(name)
                if name == self.rogue_dhcp_member():  # its first power-on meets the rogue
                    self.wait_ready(started)
                    started = []
                    roguedhcp.run_lab(self, self.segment.ns, self.taken(), list(self.guests))
                    self.guests[name].stop()  # off: its next power-on is its genuine boot
                started.append(self.start_guest(name, node.mac, self.boot_mode, media))
            if last in batch and self.scenario.rogue is not None:
                self.power_on_rogue()
            self.wait_ready(started)

    def rogue_dhcp_member(self) -> str:
        """The member whose first power-on a rogue DHCP server answers (roguedhcp.py), or ""
        when the scenario's victim is no member (or there is no rogue DHCP server)."""
        lab = self.scenario.rogue_dhcp
        return lab.victim if lab is not None and lab.victim in self.members else ""

    def taken(self) -> list[IPv4Address]:
        """Addresses of the lab's segment that are not the members' (the rogue's)."""
        return [self.rogue_node.address] if self.scenario.rogue else []

    def wait_ready(self, guests: list[Guest]) -> None:
        """Each guest's result line, timed from its own power-on as soon as it appears."""
        pending = list(guests)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while pending:
            for guest in [g for g in pending if g.result() is not None]:
                pending.remove(guest)
                line = guest.wait_result(0)
                took = time.monotonic() - guest.started
                self.report.check(
                    f"{guest.name} booted by {self.boot_mode} reaches CHAOS-READY",
                    line.startswith("CHAOS-READY"),
                    f"{took:.0f}s: {line}",
                )
            self.watch()
            if pending and time.monotonic() > deadline:
                raise ChaosError(
                    f"{pending[0].name}: no CHAOS-READY/FAILED line within "
                    f"{BOOT_TIMEOUT:.0f}s; see {pending[0].console}"
                )
            if pending:
                time.sleep(0.5)

    def enrollment_times(self) -> None:
        """When each member held its certificate, in seconds after its kernel started."""
        times = {}
        for name in self.members:
            _, out = self.guests[name].exec(
                ["journalctl", "-b", "-u", "chaos-enroll", "--no-pager", "-o", "short-monotonic"]
            )
            found = re.search(r"\[\s*([0-9.]+)\][^\n]*enrolled", out)
            times[name] = f"{float(found.group(1)):.1f}s" if found else "none"
        self.report.phase(
            "certificate held, after kernel start: "
            + ", ".join(f"{n} {t}" for n, t in times.items())
        )

    def power_on_rogue(self) -> None:
        """The rogue's VM on the segment (judged by boot_rogue once the members are checked)."""
        node = self.rogue_node
        media: dict[str, Path] = {}
        if self.rogue_boot == "kernel":
            media = {
                "kernel": self.out / "pxe" / "vmlinuz",
                "initrd": self.rogue_initrd,
                "append": Path(kernel_cmdline_for(self)),
            }
        self.start_guest("rogue", node.mac, self.rogue_boot, media)

    def judge_rogue(self) -> None:
        """The rogue, powered on beside the last member, is refused and issued nothing."""
        node = self.rogue_node
        guest = self.guests["rogue"]
        stranger = self.rogue_kind() == "stranger"
        line = guest.wait_console(STRANGER_REFUSED if stranger else ROGUE_REFUSED, BOOT_TIMEOUT)
        self.report.phase(
            f"rogue ({'a stranger' if stranger else 'as'} {node.name}, "
            f"{node.address}, unregistered TPM, {self.rogue_boot}) booted: {line}"
        )
        if stranger:
            self.stranger_refused(node)
            return
        pending = PendingStore(pki_for(self.cluster, self.config).paths.root / PENDING_FILE)
        seen = [p for p in pending.entries() if p.node == node.name]
        self.report.check(
            f"serve recorded the rogue as a pending machine for {node.name} and issued it nothing",
            bool(seen) and node.name not in self.enrolled(),
            f"{seen[0].ek_hash}, {seen[0].attempts} attempts" if seen else "not in pending.jsonl",
        )

    def stranger_refused(self, node: Node) -> None:
        """A stranger names a node chaos.yaml does not have: serve refuses it as unknown and
        issues nothing (only machines asking as a real node are listed as pending)."""
        log = (self.results / "serve.log").read_text(errors="replace")
        refused = re.search(
            rf"enroll \S+ \S+ node={re.escape(node.name)} refused unknown_node", log
        )
        self.report.check(
            f"serve refused the stranger ({node.name}) as no node of the cluster "
            "and issued it nothing",
            refused is not None and node.name not in self.enrolled(),
            refused.group(0) if refused else "no unknown_node refusal in serve.log",
        )

    def enrolled(self) -> set[str]:
        """Nodes the enrollment service issued a certificate to (serve's request log)."""
        log = (self.results / "serve.log").read_text(errors="replace")
        return set(re.findall(r"enroll \S+ /enroll/finish node=(\S+) ok", log))

    # -- checks -----------------------------------------------------------------------
    def address(self, name: str) -> str:
        if name == "rogue":
            return str(self.rogue_node.address)
        return str(self.cluster.node(name).address)

    def targets(self, on: str) -> list[str]:
        if on == "members":
            return list(self.members)
        return [on] if on in self.guests else []

    def rogue_kind(self) -> str:
        return "impersonating" if self.rogue_boot == "pxe" else "stranger"

    # -- what the admin checks ask of the lab (builder/smoke/admin_checks.Lab) ---------
    @property
    def ns(self) -> str:
        return self.segment.ns

    def rogue_name(self) -> str:
        """The node whose row in `status` is the rogue's; "" for none or a stranger."""
        if self.scenario.rogue is None or self.rogue_kind() != "impersonating":
            return ""
        return self.rogue_node.name

    def exec_on(self, node: str, argv: list[str]) -> tuple[int, str]:
        return self.guests[node].exec(argv, timeout=60)

    def check(self, title: str, ok: bool, detail: str = "") -> bool:
        return self.report.check(title, ok, detail)

    def phase(self, text: str) -> None:
        self.report.phase(text)

    def run_check(self, check: Check) -> None:
        if check.rogue_as and check.rogue_as != self.rogue_kind():
            print(f"SKIP  {check.title} (left out: {ROGUE_KINDS[check.rogue_as]})", flush=True)
            return
        for name in self.targets(check.on):
            peers = (
                [p for p in self.members if p != name]
                if "{peer}" in " ".join((*check.run, check.pattern))
                else [None]
            )
            for peer in peers:
                self.one_check(check, name, peer)

    def one_check(self, check: Check, name: str, peer: str | None) -> None:
        def fill(text: str) -> str:
            if peer is not None:
                text = text.replace("{peer}", self.address(peer))
            if self.scenario.rogue is not None:
                text = text.replace("{rogue_name}", self.rogue_node.name)
            booted = [*self.scenario.boot, *(["rogue"] if self.scenario.rogue else [])]
            for node in booted:  # the always-on head is booted, but no member
                text = text.replace("{" + node + "}", self.address(node))
            return text

        argv = [fill(a) for a in check.run]
        pattern = re.compile(fill(check.pattern), re.S)
        guest = self.guests[name]
        deadline = time.monotonic() + check.within
        while True:
            began = time.monotonic()
            rc, out = guest.exec(argv, timeout=60)
            took = time.monotonic() - began
            found = pattern.search(out) is not None
            if found == check.expect or time.monotonic() >= deadline:
                break
            self.watch()
            time.sleep(3)
        title = f"{name}: {fill(check.title)}"
        self.report.check(
            title,
            found == check.expect,
            f"{took:.1f}s"
            if found == check.expect
            else f"`{' '.join(argv)}` gave: {out.strip()[-300:]}",
        )

    def run_wire(self, check: WireCheck) -> None:
        if check.sender not in self.guests or check.receiver not in self.guests:
            print(f"SKIP  wire: {check.title} (not booted in this run)", flush=True)
            return
        marker = f"CHAOSMARK{os.getpid()}{check.port}{check.proto}"
        receiver, sender = self.guests[check.receiver], self.guests[check.sender]
        dst = self.address(check.receiver)
        if check.run:
            self.run_wire_command(check, marker)
            return
        unit = f"chaos-listen-{check.port}"
        receiver.exec(
            [
                "systemd-run",
                f"--unit={unit}",
                *PROBE,
                "listen",
                check.proto,
                str(check.port),
                str(WIRE_LISTEN_SECONDS),
            ]
        )
        listening = self.wait_heard(receiver, unit, f"listening on {check.proto}", 30)
        rc, out, tries, delivered = 1, "", 0, False
        while listening and not delivered and tries < WIRE_TRIES:
            tries += 1  # a datagram lost on a loaded host is sent again, never judged in clear
            rc, out = sender.exec(
                [*PROBE, "send", check.proto, dst, str(check.port), marker], timeout=30
            )
            delivered = self.wait_heard(receiver, unit, marker, 5)
        time.sleep(2)
        in_clear = marker in self.pcap_text(["-A"])
        esp = self.pcap_text([f"host {self.address(check.sender)} and host {dst} and esp"])
        esp_count = len([ln for ln in esp.splitlines() if "ESP" in ln])
        if check.clear:
            ok = in_clear
            detail = "marker seen in clear as expected" if ok else "marker not seen at all"
        else:
            ok = listening and not in_clear and esp_count > 0 and delivered and rc == 0
            detail = (
                f"receiver listening: {listening}, delivered: {delivered} after {tries} "
                f"send(s), marker in clear: {in_clear}, ESP packets between them: "
                f"{esp_count}"
            )
        self.report.check(f"wire: {check.title}", ok, detail + f"; send: {out.strip()[-200:]}")

    def wait_heard(self, guest: Guest, unit: str, text: str, within: float) -> bool:
        """Whether a listener unit's journal shows text within `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            _, heard = guest.exec(["journalctl", "-b", "--no-pager", "-o", "cat", "-u", unit])
            if text in heard or time.monotonic() >= deadline:
                return text in heard
            self.watch()
            time.sleep(1)

    def run_wire_command(self, check: WireCheck, marker: str) -> None:
        """A command on the sender whose traffic with the receiver carries the marker (a
        Slurm job's output, an MPI token): its output shows the marker, the bridge never
        does in clear, and ESP flows between the two."""
        marker = f"{marker}x{len(self.report.results)}"  # one of its own for each check
        argv = [a.replace("{marker}", marker) for a in check.run]
        began = time.monotonic()
        rc, out = self.guests[check.sender].exec(argv, timeout=120)
        took = time.monotonic() - began
        time.sleep(2)
        in_clear = marker in self.pcap_text(["-A"])
        src, dst = self.address(check.sender), self.address(check.receiver)
        esp = self.pcap_text([f"host {src} and host {dst} and esp"])
        esp_count = len([ln for ln in esp.splitlines() if "ESP" in ln])
        delivered = marker in out
        ok = rc == 0 and delivered and (in_clear if check.clear else not in_clear and esp_count > 0)
        self.report.check(
            f"wire: {check.title}",
            ok,
            f"{took:.1f}s, delivered: {delivered}, marker in clear: {in_clear}, "
            f"ESP packets between them: {esp_count}"
            + ("" if rc == 0 else f"; rc {rc}: {out.strip()[-300:]}"),
        )

    def pcap_text(self, args: list[str]) -> str:
        flt = [a for a in args if not a.startswith("-")]
        opts = [a for a in args if a.startswith("-")]
        r = run(
            ["tcpdump", "-r", str(self.pcap), "-nn", *opts, *flt],
            check=False,
            timeout=120,
            quiet=True,
        )
        return r.stdout.decode(errors="replace")

    def power_off(self, name: str, within: float) -> None:
        guest = self.guests[name]
        guest.stop()
        others = [m for m in self.members if m != name]
        address = self.address(name)
        start = time.monotonic()
        gone: set[str] = set()
        while time.monotonic() - start < within and len(gone) < len(others):
            for other in others:
                if other not in gone:
                    _, out = self.guests[other].exec(["python3", "-m", "tyd", "status"])
                    # removed = neither alive nor suspect, the states Slurm's follower and
                    # the exports count as in the cluster (tyd keeps a "dead" tombstone)
                    if not re.search(rf"\b{re.escape(address)}\s+({'|'.join(LIVE)})\b", out):
                        gone.add(other)
            self.watch()
            time.sleep(2)
        took = time.monotonic() - start
        self.report.check(
            f"{name} powered off is removed from every map within {within:.0f}s",
            len(gone) == len(others),
            f"{took:.0f}s, removed on {sorted(gone)}",
        )

    def morning(self) -> None:
        """The end of the night: every member drains, leaves tyd, reboots; serve answers
        "local disk" and the VM boots its own disk (the day OS prints its marker)."""
        wait = (self.night_end - dt.datetime.now(dt.UTC)).total_seconds() + MORNING_TIMEOUT
        self.report.phase(
            f"morning: the night ends at {self.night_end:%H:%M:%S}; waiting up "
            f"to {wait:.0f}s for every member's day OS"
        )
        for guest in self.guests.values():
            guest.disconnect()  # the agent goes away with the reboot
        consoles = {name: self.guests[name].wait_text(DAY_OS_MARKER, wait) for name in self.members}
        for name, text in consoles.items():
            morning = text.find("chaos-morning: leaving the cluster")
            day = text.find(DAY_OS_MARKER, max(morning, 0))
            self.report.check(
                f"{name}: stopped taking work before the end",
                "chaos-morning: no Slurm on this node: nothing to drain" in text
                or "scontrol update" in text,
            )
            self.report.check(
                f"{name}: left tyd (LEAVE announced) at the end of the night",
                morning >= 0
                and re.search(r"leaving: telling \d+ members", text) is not None
                and "LEAVE did not reach" not in text,
            )
            self.report.check(
                f"{name}: rebooted into its own disk (the day OS printed {DAY_OS_MARKER})",
                0 <= morning < day,
            )
        told = [
            n for n, t in consoles.items() if re.search(r"leaving: telling [1-9]\d* members", t)
        ]
        self.report.check(
            "the first member to leave told the others (tyd LEAVE)",
            bool(told),
            f"told by {', '.join(told)}" if told else "",
        )
        served = (self.results / "serve.log").read_text(errors="replace")
        self.report.check(
            "serve switched the boot answers to the local disk at the end",
            "outside the night: nodes get the local disk" in served,
        )
        dnsmasq = (self.results / "serve" / "dnsmasq.log").read_text(errors="replace")
        for name in self.members:
            answer = last_answer(dnsmasq, self.cluster.node(name).mac)
            self.report.check(
                f"{name}: by day dnsmasq answered it with no boot file (its "
                "firmware went on to its disk)",
                answer is not None and answer.bootfile is None,
                f"last answer: {answer}",
            )

    def evidence(self) -> None:
        for guest in self.guests.values():
            if guest.proc is None or guest.proc.poll() is not None:
                continue
            for file, argv in EVIDENCE.items():
                try:
                    _, out = guest.exec(argv, timeout=30)
                except (ChaosError, OSError) as exc:
                    # one unanswered command is enough: the rest would wait as long each
                    (guest.workdir / file).write_text(f"agent: {exc}")
                    print(f"evidence: {guest.name}: {exc}; no more asked of it", flush=True)
                    break
                (guest.workdir / file).write_text(out)

    def check_disks(self) -> None:
        for name, guest in self.guests.items():
            guest.stop()
            self.report.check(
                f"{name}: virtual disk byte-identical after the run",
                sha256(guest.disk) == self.disks[name],
            )

    def teardown(self) -> None:
        """Always runs, also after a failure or Ctrl-C; each part on its own."""
        if self.keep:
            for guest in self.guests.values():
                guest.disconnect()
            print(
                f"lab kept: namespace {self.segment.ns}, agents {self.results}/*/agent.sock;"
                " Ctrl-C tears it down",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        # a second Ctrl-C must not stop teardown; the caller's handler comes back afterwards
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for guest in self.guests.values():
                try:
                    guest.stop()
                except Exception as exc:  # noqa: BLE001
                    print(f"teardown: {guest.name}: {exc}", flush=True)
            try:
                self.check_disks()
            finally:
                self.segment.down()
        finally:
            signal.signal(signal.SIGINT, previous)

    def run(self) -> int:
        need_root()
        signal.signal(signal.SIGTERM, _interrupt)
        self.results.mkdir(parents=True, exist_ok=True)
        self.build()
        try:
            self.start_lab()
            self.check_served_files()
            if self.day_and_night is not None:  # builder/smoke/dayandnight.py
                dayandnight.run(self, self.day_and_night)
            else:
                self.one_night()
        except Exception as exc:  # noqa: BLE001 - report, collect evidence, always tear down
            self.report.check("scenario ran to the end", False, f"{type(exc).__name__}: {exc}")
            self.evidence()
        finally:
            self.teardown()
        return self.finish()

    def one_night(self) -> None:
        """The lab of every scenario but day-and-night: the members boot, are checked, and
        (with a night) leave at its end."""
        # the night: every PC powered on at once, as at 17:00
        self.boot_members(together=self.scenario.night_ends_after is not None)
        self.enrollment_times()
        if secureboot.firmware_for(self) is Firmware.SECURE_BOOT:
            secureboot.check_members(self)  # builder/smoke/secureboot.py
        if self.scenario.secure_boot is not None:
            secureboot.check_negatives(self)
        if self.scenario.rogue_dhcp is not None and not self.rogue_dhcp_member():
            roguedhcp.run_lab(self, self.segment.ns, self.taken(), self.members)
        if self.scenario.rogue is not None:
            self.judge_rogue()
        for check in self.scenario.checks:
            self.run_check(check)
        for wire in self.scenario.wire:
            self.run_wire(wire)
        admin_checks.run_all(self, "formed")
        self.evidence()
        if self.scenario.night_ends_after is not None:
            self.morning()
            admin_checks.run_all(self, "morning")
        if self.scenario.remove and self.scenario.remove in self.members:
            self.power_off(self.scenario.remove, self.scenario.remove_within)
            for check in self.scenario.after:
                self.run_check(check)

    def finish(self) -> int:
        passed = len(self.report.results) - self.report.failed
        self.report.phase(f"results in {self.results}")
        print(f"smoke: {passed} passed, {self.report.failed} failed", flush=True)
        return 1 if self.report.failed else 0


def night_cluster(cluster: Cluster, ends_after: float) -> Cluster:
    """The lab's cluster with a UTC night that began two hours ago and ends at the first
    whole minute at least ends_after seconds from now (the schedule is set relative to now)."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    start = now - dt.timedelta(hours=2)
    end = now + dt.timedelta(seconds=ends_after + 60)
    schedule = ScheduleSection(
        windows=(f"{start:%H:%M}-{end:%H:%M}",),
        time_zone="UTC",
        stop_new_work_before=1,
        morning=Morning.REBOOT,
        wake_at_start=False,
    )
    return cluster.with_section(NightModel(schedule=schedule))


def night_end(cluster: Cluster) -> dt.datetime:
    night = night_of(cluster)
    assert night is not None
    end = night.next_change(dt.datetime.now(dt.UTC))
    assert end is not None
    return end


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def kernel_cmdline_for(smoke: Smoke) -> str:
    """The PXE command line of this cluster (the rogue boots with the same)."""

    class _Ctx:
        cluster = smoke.cluster

    return kernel_cmdline(_Ctx())  # type: ignore[arg-type]


def run_smoke(
    scenario: Scenario,
    boot: str,
    results: Path,
    cache: Path,
    nodes: int | None = None,
    keep: bool = False,
) -> int:
    try:
        return Smoke(scenario, boot, results, cache, nodes, keep).run()
    except subprocess.TimeoutExpired as exc:
        raise ChaosError(f"timed out: {exc}") from None
