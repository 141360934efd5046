"""chaos-pushjobs.timer: the head tells serve how many Slurm jobs run on each node (Slurm's
view, `squeue`), so `chaos-build status` and /metrics show who works.

Only the nodes whose count changed since the last push go (a state file in RAM), in pushes
that each stay inside chaosnode.push's bounds. A failure is said once (the state file keeps
that it was said) and tried again at the next tick; squeue gets SQUEUE_TIMEOUT seconds.

    python3 -I -m chaosnode.pushjobs [--state /run/chaos/push-jobs.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from chaosnode import paths
from chaosnode.console import say
from chaosnode.enrollment import NODE_NAME
from chaosnode.files import atomic_write
from chaosnode.push import MAX_JOBS_NODES, MAX_PUSH, MemberPush, Pusher, node_sender

SQUEUE: Final = ("squeue", "-h", "-t", "running", "-o", "%N")
SQUEUE_TIMEOUT: Final = 30
MAX_HOSTS: Final = 100_000  # a hostlist that expands to more is not Slurm's
# one bracket group of a Slurm hostlist: node[01-03,07]
BRACKET = re.compile(r"^([^\[\]]*)\[([0-9,\-]+)\]([^\[\]]*)$")


def split_list(text: str) -> list[str]:
    """A Slurm hostlist's items: commas outside brackets separate them."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [i for i in (s.strip() for s in items) if i]


def expand(hostlist: str) -> list[str]:
    """node[01-03],head -> node01 node02 node03 head (zero-padding kept); ValueError for
    what is no hostlist of node names."""
    out: list[str] = []
    for item in split_list(hostlist):
        m = BRACKET.match(item)
        if m is None:
            if "[" in item or "]" in item:
                raise ValueError(f"{item[:80]!r} is no Slurm hostlist")
            out.append(item)
            continue
        prefix, ranges, suffix = m.groups()
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise ValueError(f"{item[:80]!r} is no Slurm hostlist")
            width = len(lo)
            first, last = int(lo), int(hi or lo)
            if last < first or len(out) + last - first >= MAX_HOSTS:
                raise ValueError(f"{item[:80]!r} is no Slurm hostlist")
            out += [f"{prefix}{n:0{width}d}{suffix}" for n in range(first, last + 1)]
    bad = [h for h in out if not NODE_NAME.match(h)]
    if bad:
        raise ValueError(f"{bad[0][:80]!r} is no node name")
    return out


def running(squeue_out: str) -> Counter[str]:
    """Running jobs per node from `squeue -h -t running -o %N` (one job's nodes a line)."""
    jobs: Counter[str] = Counter()
    for line in squeue_out.splitlines():
        jobs.update(set(expand(line)))
    return jobs


def changes(before: Mapping[str, int], now: Mapping[str, int]) -> dict[str, int]:
    """Nodes whose count changed (a node whose jobs ended goes with 0)."""
    return {
        n: now.get(n, 0)
        for n in sorted(set(before) | set(now))
        if now.get(n, 0) != before.get(n, 0)
    }


def pushes(head: str, jobs: Mapping[str, int]) -> list[MemberPush]:
    """As few pushes as the bounds allow (MAX_JOBS_NODES nodes, MAX_PUSH bytes each)."""
    out: list[MemberPush] = []
    batch: list[tuple[str, int]] = []
    for name, n in sorted(jobs.items()):
        trial = MemberPush(head, "jobs", jobs=(*batch, (name, min(n, 65535))))
        if batch and (len(trial.jobs) > MAX_JOBS_NODES or len(trial.to_json()) > MAX_PUSH):
            out.append(MemberPush(head, "jobs", jobs=tuple(batch)))
            batch = []
        batch.append((name, min(n, 65535)))
    if batch:
        out.append(MemberPush(head, "jobs", jobs=tuple(batch)))
    return out


def load_state(path: Path) -> tuple[dict[str, int], bool, str]:
    """(what was pushed, whether the last push failed, the last problem said)."""
    try:
        doc = json.loads(path.read_text())
        pushed = {str(k): int(v) for k, v in doc["pushed"].items()}
        return pushed, bool(doc["failing"]), str(doc.get("said", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, False, ""


def save_state(path: Path, pushed: Mapping[str, int], failing: bool, said: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(
        path, json.dumps({"pushed": dict(pushed), "failing": failing, "said": said}).encode()
    )


def squeue() -> str:
    r = subprocess.run(SQUEUE, capture_output=True, text=True, timeout=SQUEUE_TIMEOUT)
    if r.returncode != 0:
        raise OSError(f"{' '.join(SQUEUE)}: exit {r.returncode} {r.stderr.strip()[-200:]}")
    return r.stdout


def tick(
    head: str,
    state: Path,
    pusher_of: Callable[[bool], Pusher],
    ask: Callable[[], str] = squeue,
    say: Callable[[str], None] = say,
) -> int:
    """One look at Slurm and the pushes it calls for; the state file remembers the rest."""
    pushed, failing, said = load_state(state)
    try:
        now = running(ask())
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        problem = f"chaos-pushjobs: cannot read Slurm's jobs: {exc}"
        if problem != said:
            say(problem + " (said once)")
        save_state(state, pushed, failing, problem)
        return 0
    pusher = pusher_of(failing)
    done = dict(pushed)
    for push in pushes(head, changes(pushed, now)):
        if not pusher.push(push):
            break
        done.update(push.jobs)
    save_state(state, {n: v for n, v in done.items() if v}, pusher.failing, "")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chaos-pushjobs", description=__doc__.splitlines()[0])
    p.add_argument("--state", type=Path, default=Path(paths.PUSH_JOBS_STATE))
    p.add_argument("--node-json", type=Path, default=Path(paths.NODE_JSON))
    args = p.parse_args(argv)
    try:
        name, send_one = node_sender(args.node_json)
    except (OSError, ValueError) as exc:
        say(f"chaos-pushjobs: cannot read {args.node_json}: {exc}")
        return 1
    if send_one is None:
        return 0  # no serve.address: nothing to tell (chaos-pushwatch says so once)
    return tick(name, args.state, lambda failing: Pusher(send_one, say, failing))


if __name__ == "__main__":
    sys.exit(main())
