"""The subprocess helpers of chaos-build: run() for commands that finish, spawn() and
supervised() for long-running children (dnsmasq, QEMU, swtpm, tcpdump, charon), which are
always stopped and reaped by stop_processes(), and the host tool check."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from builder.errors import BuildError, ChaosError, ToolMissing

log = logging.getLogger("chaos.run")

STDERR_TAIL_LINES = 20
# depmod, mkfs.vfat and friends live in sbin, which a user's PATH may lack
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def which(tool: str) -> str | None:
    if "/" in tool:
        return tool if Path(tool).exists() else None
    return shutil.which(tool, path=SEARCH_PATH)


def argv_of(argv: Sequence[str | Path]) -> list[str]:
    """The argument list a child gets: every Path made absolute (dnsmasq, nginx and others
    change directory, so a relative path would name another file there), the program found
    on the search path."""
    args = [str(a.absolute()) if isinstance(a, Path) else str(a) for a in argv]
    args[0] = which(args[0]) or args[0]
    return args


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
    quiet: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never through a shell); on failure (check) raise BuildError with the tail of
    stderr. Each command is logged unless quiet (small plumbing such as `ip link`)."""
    args = argv_of(argv)
    (log.debug if quiet else log.info)("$ %s", shlex.join(args))
    proc = subprocess.run(
        args,
        env=None if env is None else dict(env),
        cwd=cwd,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        input=input,
        check=False,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        tail = b"\n".join(proc.stderr.splitlines()[-STDERR_TAIL_LINES:]).decode(errors="replace")
        raise BuildError(
            f"command failed with exit code {proc.returncode}: {shlex.join(args)}\n{tail}"
        )
    return proc


def spawn(
    argv: Sequence[str | Path],
    *,
    log_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running child, logged; its output goes to log_file (appended), or to
    stdout (e.g. subprocess.PIPE), else is discarded. The caller owns it: stop it with
    stop_processes(), or use supervised()."""
    args = argv_of(argv)
    log.info("$ %s &%s", shlex.join(args), f" (log {log_file})" if log_file else "")
    out: int | object = stdout if stdout is not None else subprocess.DEVNULL
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as f:  # the child keeps its own descriptor
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
            )
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=out,  # type: ignore[arg-type]
        stderr=subprocess.STDOUT,
        env=None if env is None else dict(env),
    )


@contextlib.contextmanager
def supervised(argv: Sequence[str | Path], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """spawn() for the duration of a with-block; stopped and reaped however the block ends."""
    proc = spawn(argv, **kwargs)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        stop_processes([proc])


def process_failure(proc: subprocess.Popen[bytes], what: str, log_file: Path | None) -> ChaosError:
    """The error for a child that ended on its own: its exit code and the tail of its log."""
    tail = ""
    if log_file is not None and log_file.exists():
        lines = log_file.read_text(errors="replace").splitlines()[-STDERR_TAIL_LINES:]
        tail = f"; last lines of {log_file}:\n" + "\n".join(lines)
    argv = shlex.join(str(a) for a in proc.args)  # type: ignore[union-attr]
    return ChaosError(f"{what} exited with code {proc.returncode}: {argv}{tail}")


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    """Terminate every process still running (newest first), then reap each; kill the ones
    that do not end within timeout."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_tools(tools: Mapping[str, str]) -> None:
    """Fail before any work if a needed host tool is missing; `tools` maps tool -> reason."""
    missing = [f"  {tool}: {why}" for tool, why in sorted(tools.items()) if which(tool) is None]
    if missing:
        raise ToolMissing(
            "missing host tools (apt-get install mmdebstrap xorriso isolinux "
            "syslinux-common pxelinux grub-efi-amd64-bin mtools dosfstools ipxe "
            "cpio zstd xz-utils lz4 kmod):\n" + "\n".join(missing)
        )
