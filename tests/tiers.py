"""`make test`: every tier, in two phases that use both of CI's cores.

Phase 1 runs the image tier (QEMU boots under TCG: one core) beside the unit and integration
tiers (pytest in one process: one core) and then, while the image tier still boots, the
shortest lab (EARLY_LAB, two guests). They share only the image cache, which a build holds
with a lock (builder/image/build.py cache_lock); namespaces carry their test's pid or a
random tag. Phase 2 runs the other labs alone: they boot three or four guests each.

Each pytest prints its own tiers' wall time; the image tier's output is kept in a file and
printed whole when it ends, so the two never interleave. The end prints each phase's wall
time. The exit code is the first failing pytest's (no test selected counts as a pass, for
PYTEST_ARGS that select a few tests); PYTEST_ARGS with a -m of their own run one pytest.

    python tests/tiers.py [pytest args...]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

NO_TESTS = 5  # pytest's exit code when the selection is empty


@dataclass(frozen=True)
class Tier:
    name: str
    marks: str  # pytest's -m expression


BESIDE = Tier("unit + integration", "not image and not smoke")
IMAGE = Tier("image", "image and not smoke")  # conftest.tier(): smoke wins
SMOKE = Tier("smoke", "smoke")
# the lab that runs in phase 1 after unit + integration (one of tests/smoke/test_smoke.py's)
EARLY_LAB = "tests/smoke/test_smoke.py::test_scenario[migration-pxe]"


def pytest(tier: Tier, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-m", tier.marks, *args]


def ok(code: int) -> bool:
    return code in (0, NO_TESTS)


def first_failure(*codes: int) -> int:
    """A phase's exit code: its first failing pytest's, else 0."""
    return next((c for c in codes if not ok(c)), 0)


def phase_one(args: list[str]) -> int:
    """The image tier in the background (output to a file); unit + integration, then the
    early lab, in front."""
    with tempfile.TemporaryFile("w+") as log:
        image = subprocess.Popen(pytest(IMAGE, args), stdout=log, stderr=subprocess.STDOUT)
        try:
            print(
                f"== phase 1: {BESIDE.name} here, {IMAGE.name} beside it (printed when it ends)",
                flush=True,
            )
            beside = subprocess.call(pytest(BESIDE, args))
            print(f"== {BESIDE.name} done (exit {beside}); then {EARLY_LAB}", flush=True)
            early = subprocess.call(pytest(SMOKE, [*args, EARLY_LAB]))
            print(f"== the early lab done (exit {early}); waiting for {IMAGE.name}", flush=True)
            imaged = image.wait()
        finally:
            if image.poll() is None:
                image.kill()
                image.wait()
        log.seek(0)
        print(f"== the {IMAGE.name} tier's output (exit {imaged})", flush=True)
        sys.stdout.write(log.read())
        sys.stdout.flush()
    return first_failure(beside, early, imaged)


def phase_two(args: list[str]) -> int:
    print(f"== phase 2: {SMOKE.name}", flush=True)
    return first_failure(subprocess.call(pytest(SMOKE, [*args, "--deselect", EARLY_LAB])))


def own_selection(args: list[str]) -> bool:
    """PYTEST_ARGS with a -m of their own: one pytest, as asked (no phases)."""
    return any(a == "-m" or (a.startswith("-m") and not a.startswith("--")) for a in args)


def main(args: list[str]) -> int:
    if own_selection(args):
        return subprocess.call([sys.executable, "-m", "pytest", *args])
    began = time.monotonic()
    first = phase_one(args)
    one = time.monotonic() - began
    second = phase_two(args)
    two = time.monotonic() - began - one
    print("== wall time per phase", flush=True)
    print(f"phase 1 ({BESIDE.name}, the early lab; {IMAGE.name})  {one:8.1f} s  exit {first}")
    print(f"phase 2 ({SMOKE.name})  {two:8.1f} s  exit {second}")
    print(f"total  {one + two:8.1f} s")
    return first or second


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
