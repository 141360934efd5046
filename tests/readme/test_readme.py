"""The README's commands are a test: the command blocks of README.md ("The two commands" and
"What a lab admin does") are read from the README itself, so the two cannot drift, and run
as an admin types them: from a fresh copy of the repository as the working directory, with
relative paths, in the order given. `serve` and `wake` run inside a network namespace of the
test's own (a client namespace beside it gets a DHCP answer, a TFTP file and an HTTP file,
and asks to enroll with a TPM nobody registered), then Ctrl-C; `smoke -c chaos.yaml` runs the
default scenario on the shipped cluster file with the default results folder.

Every command must exit as the README says, within its deadline; the transcript (each
command and the tail of what it printed) is kept as README-TRANSCRIPT.txt in the results.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from chaostest import ROOT

from builder.cli import parser

README = ROOT / "README.md"
SECTIONS = ("The two commands", "What a lab admin does")
HERE = Path(__file__).resolve().parent
# the README's lab interface, and the one the test gives serve and wake in its namespace
README_INTERFACE = "enp3s0"
LAB_INTERFACE = "lab0"
SERVER, CLIENT = "10.99.0.1", "10.99.0.2"  # serve.address of chaos.yaml, and a client
CACHE = os.environ.get("CHAOS_IMAGE_CACHE", "/var/tmp/chaos-image-cache")
# commands the test does not run, and why
NOT_RUN = {
    "$EDITOR": "the test runs the shipped chaos.yaml as it is",
    "make test": "this is the test suite that make test runs",
}
# seconds each command may take before it counts as a hang
DEADLINES = {"make build": 2400, "chaos-build build": 1200, "chaos-build smoke": 2400}
DEFAULT_DEADLINE = 120


@dataclass(frozen=True)
class Command:
    section: str
    line: int  # in README.md
    text: str  # as the admin types it, without its comment
    comment: str = ""

    @property
    def exit_code(self) -> int:
        """What the README says it exits with: 0, or the code its comment names."""
        said = re.search(r"\(exit (\d+) ", self.comment)
        return int(said.group(1)) if said else 0

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)

    @property
    def program(self) -> str:
        """`chaos-build serve`, `make build`, `$EDITOR`: what decides how it is run."""
        words = self.words
        return " ".join(words[:2]) if words[0] in ("chaos-build", "make") else words[0]


def readme_commands() -> list[Command]:
    """The commands of the first code block under each of SECTIONS, in README order."""
    lines = README.read_text().splitlines()
    commands = []
    for section in SECTIONS:
        start = next(i for i, ln in enumerate(lines) if ln.startswith(f"## {section}"))
        fence = next(i for i in range(start, len(lines)) if lines[i] == "```")
        end = next(i for i in range(fence + 1, len(lines)) if lines[i] == "```")
        for i in range(fence + 1, end):
            text, _, comment = lines[i].partition(" #")
            if text.strip():
                commands.append(Command(section, i + 1, text.strip(), comment.strip()))
    return commands


def argv_for(command: Command, pending_hash: str = "sha256:" + "0" * 64) -> list[str]:
    """The command as run: the README's interface is the test's, the EK hash is the one
    `enroll pending` listed."""
    return [
        LAB_INTERFACE if w == README_INTERFACE else pending_hash if w == "sha256:..." else w
        for w in command.words
    ]


def test_readme_blocks_hold_the_commands_the_test_runs():
    """Unit: the blocks parse, each chaos-build command parses with today's command line (an
    option the README shows and the parser lacks fails here, not at a user's desk), and each
    command is either run or left out with a reason."""
    commands = readme_commands()
    programs = [c.program for c in commands]
    assert programs[:2] == ["make build", "make test"], programs
    for needed in ("chaos-build serve", "chaos-build smoke", "chaos-build build"):
        assert needed in programs
    for command in commands:
        if command.program in NOT_RUN:
            continue
        if command.words[0] == "chaos-build":
            parser().parse_args(argv_for(command)[1:])
        else:
            assert command.words[0] == "make", f"README.md:{command.line}: {command.text}"


# -- the run ----------------------------------------------------------------------------
def fresh_copy(dest: Path) -> Path:
    """The repository's files (tracked, and new ones git does not ignore), as a clone has
    them: no venv, no build output, no PKI."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (p.decode() for p in listed)):
        source = ROOT / rel
        if source.is_symlink() or source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            # links stay links, as git checks them out (a unit enabled by a symlink in a
            # .wants folder is ignored by systemd when it is a copy; masks point at /dev/null)
            shutil.copy2(source, dest / rel, follow_symlinks=False)
    return dest


@contextlib.contextmanager
def lab_segment() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth: the lab side (lab0, serve.address) and a client."""
    lab, client = f"chaos-readme-lab-{os.getpid()}", f"chaos-readme-cli-{os.getpid()}"
    run = ["ip", "netns", "exec"]
    try:
        for ns in (lab, client):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                "ip",
                "-n",
                lab,
                "link",
                "add",
                LAB_INTERFACE,
                "type",
                "veth",
                "peer",
                "name",
                "cli0",
                "netns",
                client,
            ],
            check=True,
        )
        subprocess.run(
            [*run, lab, "ip", "addr", "add", f"{SERVER}/24", "dev", LAB_INTERFACE], check=True
        )
        subprocess.run(
            [*run, client, "ip", "addr", "add", f"{CLIENT}/24", "dev", "cli0"], check=True
        )
        subprocess.run([*run, lab, "ip", "link", "set", LAB_INTERFACE, "up"], check=True)
        subprocess.run([*run, client, "ip", "link", "set", "cli0", "up"], check=True)
        yield lab, client
    finally:
        for ns in (lab, client):
            subprocess.run(["ip", "netns", "del", ns], check=False)


class Admin:
    """Types the README's commands in the copy, keeping a transcript."""

    def __init__(self, copy: Path, lab: str, client: str, transcript: Path) -> None:
        self.copy, self.lab, self.client, self.transcript = copy, lab, client, transcript
        self.env = {
            **os.environ,
            "PATH": f"{copy / '.venv/bin'}:{os.environ['PATH']}",
            "CHAOS_IMAGE_CACHE": CACHE,
        }
        self.pending_hash = ""

    def note(self, text: str) -> None:
        with self.transcript.open("a") as f:
            f.write(text.rstrip() + "\n")
        print(text, flush=True)

    def run(
        self,
        argv: list[str],
        deadline: float,
        netns: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full = ["ip", "netns", "exec", netns, *argv] if netns else argv
        try:
            return subprocess.run(
                full,
                cwd=self.copy,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=deadline,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"")[-2000:]
            pytest.fail(f"`{shlex.join(argv)}` hung past its {deadline:.0f} s deadline: {out!r}")

    def record(self, command: Command, r: subprocess.CompletedProcess[str], took: float) -> str:
        out = (r.stdout + r.stderr).strip()
        (self.transcript.parent / f"README-{command.line}.out").write_text(out + "\n")
        tail = "\n".join("    " + ln for ln in out.splitlines()[-12:])
        self.note(
            f"README.md:{command.line}: $ {command.text}\n  exit {r.returncode} after "
            f"{took:.1f} s\n{tail}"
        )
        return out

    def type(self, command: Command) -> None:
        if command.program in NOT_RUN:
            self.note(
                f"README.md:{command.line}: $ {command.text}\n  not run: {NOT_RUN[command.program]}"
            )
            return
        if command.program == "chaos-build serve":
            self.serve(command)
            return
        argv = argv_for(command, self.pending_hash)
        began = time.monotonic()
        netns = self.lab if command.program == "chaos-build wake" else None
        r = self.run(argv, DEADLINES.get(command.program, DEFAULT_DEADLINE), netns)
        out = self.record(command, r, time.monotonic() - began)
        where = f"README.md:{command.line}: `{command.text}`"
        assert r.returncode == command.exit_code and "Traceback" not in out, (
            f"{where} exited {r.returncode}, the README says {command.exit_code}: {out[-3000:]}"
        )
        if command.exit_code:
            # a refusal the README announces: one clear line naming what was refused
            assert out.splitlines()[-1].startswith("error: ") and command.words[-1] in out, out
            return
        if command.words[:3] == ["chaos-build", "enroll", "pending"]:
            assert self.pending_hash and self.pending_hash in out, (
                f"{where}: the machine that asked during serve is not listed: {out}"
            )
        if command.program == "chaos-build smoke":
            assert re.search(r"^smoke: [1-9]\d* passed, 0 failed$", out, re.M), out[-3000:]
        if command.program == "chaos-build wake":
            assert "sent 3 Wake-on-LAN packet(s) on lab0" in out, out

    def serve(self, command: Command) -> None:
        """serve in the lab namespace until the client got its answers, then Ctrl-C."""
        began = time.monotonic()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.lab, *argv_for(command)],
            cwd=self.copy,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            answers = self.client_session(proc)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        r = subprocess.CompletedProcess(proc.args, proc.returncode, out + answers, "")
        self.record(command, r, time.monotonic() - began)
        assert proc.returncode == 0 and "serve stopped" in out, out[-3000:]

    def client_session(self, proc: subprocess.Popen[str]) -> str:
        """What a PC on the lab segment gets while serve runs; returns the client's log."""
        http = f"http://{SERVER}:8080/boot.ipxe"
        curl = ["ip", "netns", "exec", self.client, "curl", "-sS", "--max-time", "5"]
        deadline = time.monotonic() + 90
        while subprocess.run([*curl, "-o", "/dev/null", http], capture_output=True).returncode:
            still_serving(proc)
            if time.monotonic() > deadline:
                pytest.fail("serve did not answer HTTP within 90 s")
            time.sleep(0.5)
        log = []
        still_serving(proc)
        dhcp = self.run(
            [
                str(self.copy / ".venv/bin/python"),
                str(HERE / "dhcp_probe.py"),
                "cli0",
                "52:54:00:99:00:11",
            ],
            30,
            self.client,
        )
        log.append(f"client DHCP: {dhcp.stdout.strip()}")
        still_serving(proc)
        assert (
            dhcp.returncode == 0 and f"offer from {SERVER} vendor-class=PXEClient" in dhcp.stdout
        ), dhcp.stdout + dhcp.stderr
        loader = subprocess.run([*curl, f"tftp://{SERVER}/undionly.kpxe"], capture_output=True)
        expected = (self.copy / "out/pxe/undionly.kpxe").read_bytes()
        log.append(f"client TFTP undionly.kpxe: {len(loader.stdout)} bytes")
        assert loader.returncode == 0 and loader.stdout == expected, loader.stderr
        script = subprocess.run([*curl, http], capture_output=True)
        log.append(f"client HTTP boot.ipxe: {len(script.stdout)} bytes")
        assert script.returncode == 0 and script.stdout.startswith(b"#!ipxe"), script.stderr
        ask = self.run(
            [
                str(self.copy / ".venv/bin/python"),
                str(HERE / "enroll_probe.py"),
                f"https://{SERVER}:8443",
                str(self.copy / "pki/ca.pem"),
                "node02",
                "10.99.0.12",
                str(self.copy / "build/readme-client"),
            ],
            60,
            self.client,
        )
        found = re.search(r"not registered as node02: TPM EK (sha256:[0-9a-f]{64})", ask.stderr)
        log.append(
            f"client enrollment (a TPM nobody registered): exit {ask.returncode}, "
            f"{found.group(0) if found else ask.stderr.strip()[-300:]}"
        )
        assert ask.returncode == 1 and found, ask.stdout + ask.stderr
        self.pending_hash = found.group(1)
        return "\n" + "\n".join(log)


def still_serving(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        out = proc.stdout.read() if proc.stdout else ""
        pytest.fail(f"serve exited with {proc.returncode} while the client asked: {out[-3000:]}")


@pytest.mark.smoke
def test_readme_commands_as_an_admin_types_them(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("serve, wake and smoke need root (network namespaces, bridge, taps)")
    results = Path(os.environ.get("CHAOS_SMOKE_RESULTS", tmp_path))
    results.mkdir(parents=True, exist_ok=True)
    transcript = results / "README-TRANSCRIPT.txt"
    transcript.write_text("")
    copy = fresh_copy(Path(tempfile_dir()) / "chaos")
    try:
        with lab_segment() as (lab, client):
            admin = Admin(copy, lab, client, transcript)
            for command in readme_commands():
                admin.type(command)
    finally:
        keep = results / "readme-smoke-results"
        if (copy / "results").is_dir():
            shutil.copytree(copy / "results", keep, dirs_exist_ok=True, symlinks=True)
        shutil.rmtree(copy.parent, ignore_errors=True)


def tempfile_dir() -> str:
    """A folder others can enter (nginx's unprivileged workers read out/pxe there), outside
    pytest's 0700 tmp."""
    path = tempfile.mkdtemp(prefix="chaos-readme-")
    os.chmod(path, 0o755)
    return path
