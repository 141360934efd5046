"""chaos installed the way a user installs it: the wheel built from the tracked sources, put
into a fresh venv outside the checkout, and its commands run from another directory.

The unit test (test_wheel.py) takes the dependencies from the running venv (no network); CI
(`make test-wheel`) runs this file, which installs them from the package index and also builds
an image from the warm rootfs cache:

    python tests/installed.py [--deps index|venv] [--build]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("CHAOS_IMAGE_CACHE", "/var/tmp/chaos-image-cache"))


class InstallCheckFailed(Exception):
    """A step of installing or running the wheel failed."""


@dataclass(frozen=True)
class Installed:
    venv: Path
    work: Path  # an empty directory outside the checkout, holding a copy of chaos.yaml

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def chaos_build(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([self.venv / "bin" / "chaos-build", *args], cwd=self.work, timeout=timeout)


def run(
    argv: list[str | Path], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The clean environment a user's shell gives (no PYTHONPATH into the checkout); the
    unpacked overlays go to a cache beside cwd, not the user's ~/.cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if cwd is not None:
        env["XDG_CACHE_HOME"] = str(cwd.parent / "xdg-cache")
    r = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if r.returncode != 0:
        raise InstallCheckFailed(
            f"{' '.join(map(str, argv))}: exit {r.returncode}\n{r.stdout[-2000:]}{r.stderr[-4000:]}"
        )
    return r


def copy_sources(dest: Path) -> Path:
    """What a clean clone has: the tracked files and new ones not ignored (no .venv, build/)."""
    listed = run(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard", "-z"]).stdout
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_symlink() or src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name, follow_symlinks=False)
    return dest


def build_wheel(src: Path, dist: Path) -> Path:
    """`pip wheel` offline: no build isolation, the running venv's setuptools and wheel."""
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            dist,
            src,
        ],
        timeout=600,
    )
    wheels = sorted(dist.glob("chaos-*.whl"))
    if len(wheels) != 1:
        raise InstallCheckFailed(f"{dist}: expected one chaos wheel, found {wheels}")
    return wheels[0]


def install(wheel: Path, venv: Path, deps: str) -> None:
    """deps 'index': pip installs them from the package index, as `pip install .` does;
    'venv': they come from the running venv's site-packages (a .pth line, no network)."""
    base = getattr(sys, "_base_executable", sys.executable)
    if deps == "index":
        run([base, "-m", "venv", venv])
        run([venv / "bin/python", "-m", "pip", "install", "-q", wheel], timeout=1200)
        return
    run([base, "-m", "venv", "--without-pip", venv])
    purelib = Path(
        run(
            [venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    (purelib / "chaos-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin/python",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            wheel,
        ]
    )


def install_wheel(tmp: Path, deps: str = "venv") -> Installed:
    """Build the wheel from a copy of the sources and install it into tmp/venv."""
    wheel = build_wheel(copy_sources(tmp / "src"), tmp / "dist")
    install(wheel, tmp / "venv", deps)
    work = tmp / "work"
    work.mkdir()
    shutil.copy(ROOT / "chaos.yaml", work / "chaos.yaml")
    return Installed(tmp / "venv", work)


def check_commands(inst: Installed) -> list[str]:
    """The user's commands from outside the checkout; returns what was run."""
    where = run(
        [inst.python, "-c", "import builder; print(builder.__file__)"], cwd=inst.work
    ).stdout.strip()
    if not where.startswith(str(inst.venv)):
        raise InstallCheckFailed(f"builder imported from {where}, not from {inst.venv}")
    done = []
    # render needs the cluster CA
    for args in (
        ["--help"],
        ["check", "-c", "chaos.yaml"],
        ["pki", "init", "-c", "chaos.yaml"],
        ["render", "-c", "chaos.yaml"],
        ["show", "node02", "-c", "chaos.yaml"],
    ):
        inst.chaos_build(*args)
        done.append(" ".join(["chaos-build", *args]))
    if not (inst.work / "build/nodes/node02/etc/swanctl/swanctl.conf").is_file():
        raise InstallCheckFailed("render wrote no swanctl.conf for node02")
    return done


def check_build(inst: Installed, cache: Path = CACHE_DIR) -> str:
    """`chaos-build build` from the warm rootfs cache. Without one: skipped with a reason,
    except with CI=true, where a missing cache means the image tier did not run."""
    if not (cache / "rootfs").is_dir():
        reason = f"no rootfs cache in {cache} (CHAOS_IMAGE_CACHE): the image build is skipped"
        if os.environ.get("CI") == "true":
            raise InstallCheckFailed(f"{reason}; with CI=true the image tier must fill it")
        return reason
    inst.chaos_build("build", "-c", "chaos.yaml", "--cache", str(cache), timeout=3600)
    if not (inst.work / "out/summary.json").is_file():
        raise InstallCheckFailed("chaos-build build wrote no out/summary.json")
    return f"chaos-build build -c chaos.yaml --cache {cache}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deps", choices=["index", "venv"], default="index")
    p.add_argument("--build", action="store_true", help="also build the image (warm cache)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="chaos-wheel-") as tmp:
        try:
            inst = install_wheel(Path(tmp), args.deps)
            done = check_commands(inst)
            if args.build:
                done.append(check_build(inst))
        except InstallCheckFailed as exc:
            print(f"installed wheel: FAILED: {exc}", file=sys.stderr)
            return 1
    for line in done:
        print(f"installed wheel: ok: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
