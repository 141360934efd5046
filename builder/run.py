"""The one subprocess helper of chaos-build (image, serve, smoke), and the host tool check."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from builder.errors import BuildError, ToolMissing

log = logging.getLogger("chaos.run")

STDERR_TAIL_LINES = 20
# depmod, mkfs.vfat and friends live in sbin, which a user's PATH may lack
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def which(tool: str) -> str | None:
    if "/" in tool:
        return tool if Path(tool).exists() else None
    return shutil.which(tool, path=SEARCH_PATH)


def run(argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, stdout: int | None = None, input: bytes | None = None,
        check: bool = True, timeout: float | None = None, quiet: bool = False,
        ) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never through a shell); on failure (check) raise BuildError with the tail of
    stderr. Each command is logged unless quiet (small plumbing such as `ip link`)."""
    args = [str(a) for a in argv]
    args[0] = which(args[0]) or args[0]
    (log.debug if quiet else log.info)("$ %s", shlex.join(args))
    proc = subprocess.run(args, env=None if env is None else dict(env), cwd=cwd,
                          stdout=stdout if stdout is not None else subprocess.PIPE,
                          stderr=subprocess.PIPE, input=input, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        tail = b"\n".join(proc.stderr.splitlines()[-STDERR_TAIL_LINES:]).decode(errors="replace")
        raise BuildError(f"command failed with exit code {proc.returncode}: "
                         f"{shlex.join(args)}\n{tail}")
    return proc


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
        raise ToolMissing("missing host tools (apt-get install mmdebstrap xorriso isolinux "
                          "syslinux-common pxelinux grub-efi-amd64-bin mtools dosfstools ipxe "
                          "cpio zstd xz-utils lz4 kmod):\n" + "\n".join(missing))
