"""Boot answers by the clock: inside the night a node boots the cluster, outside it its disk.

serve does not hand out the build's PXE tree itself but a served tree in its run directory:
every file of the build linked in place (kernel, initrd and node files stay nginx's sendfile
work), and each node's three boot answers (iPXE over HTTP, pxelinux and GRUB over TFTP,
builder.image.pxe.answer_paths) replaced atomically (rename) at every edge of the night:
a link to the build's cluster answer inside the night, a local-disk answer outside it.

Why rewrite at the edges instead of answering each request from Python: the pxelinux and
GRUB answers go out over dnsmasq's TFTP, which cannot ask Python; one mechanism covers all
three loaders, the HTTP answer stays a static file (nginx, no proxy hop, no Python in the
17:00 storm) and serve's clock is consulted once per edge, not once per request.
A MAC that is no node gets the dispatch's fallback (boot.ipxe, pxelinux.cfg/default, GRUB's
config: the local disk) at any hour.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from chaosnode.files import atomic_write
from chaosnode.window import Night

from ..image.pxe import answer_paths, local_disk_answers
from ..model import Cluster, Node


@dataclass(frozen=True)
class BootAnswer:
    mac: str
    node: str | None  # None: no node of this cluster has the MAC
    cluster_boot: bool
    until: dt.datetime | None  # when the answer changes; None: never (no schedule)

    def describe(self) -> str:
        who = f"node {self.node}" if self.node else "no node of this cluster"
        what = "the cluster boot" if self.cluster_boot else "the local disk"
        if self.node is None:
            return f"{self.mac} ({who}) gets {what} at any hour"
        when = f"until {self.until.isoformat()}" if self.until else "at any hour (no schedule)"
        return f"{self.mac} ({who}) gets {what} {when}"


def answer_for(cluster: Cluster, night: Night | None, mac: str, now: dt.datetime) -> BootAnswer:
    """Pure: what a machine with this MAC is answered at `now`, and until when."""
    mac = mac.lower().replace("-", ":")
    node = next((n for n in cluster.nodes if n.mac == mac), None)
    if node is None:
        return BootAnswer(mac, None, False, None)
    if night is None or node.always_on:  # the always-on head has no night and no morning
        return BootAnswer(mac, node.name, True, None)
    return BootAnswer(mac, node.name, night.inside(now), night.next_change(now))


def _why(night: Night, now: dt.datetime) -> str:
    until = night.next_change(now)
    return f"outside the night until {until.isoformat()}" if until else "outside the night"


def _replace_link(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}.new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.resolve())
    os.replace(tmp, link)


def write_answers(
    tree: Path, pxe_dir: Path, node: Node, cluster_boot: bool, why: str = "outside the night"
) -> None:
    """Put one node's three answers in place, each by an atomic rename."""
    local = local_disk_answers(node, why)
    for rel, day_text in zip(answer_paths(node), local, strict=True):
        dest = tree / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if cluster_boot:
            if (pxe_dir / rel).is_file():
                _replace_link(dest, pxe_dir / rel)
            else:  # the build has no such loader's answer: none, rather than the day's
                dest.unlink(missing_ok=True)
        else:
            atomic_write(dest, day_text)


def refresh(
    tree: Path, pxe_dir: Path, cluster: Cluster, night: Night | None, now: dt.datetime
) -> bool:
    """Every node's answers for `now`; returns whether they are the cluster boot."""
    inside = night is None or night.inside(now)
    why = "" if night is None or inside else _why(night, now)
    for node in cluster.nodes:
        write_answers(tree, pxe_dir, node, inside or node.always_on, why)
    return inside


def assemble(
    tree: Path, pxe_dir: Path, cluster: Cluster, night: Night | None, now: dt.datetime
) -> bool:
    """Build the served tree: the build's files linked, answers for `now` written."""
    answers = {rel for n in cluster.nodes for rel in answer_paths(n)}
    tree.mkdir(parents=True, exist_ok=True)
    tree.chmod(0o755)
    for src in sorted(pxe_dir.rglob("*")):
        rel = src.relative_to(pxe_dir).as_posix()
        dest = tree / rel
        if src.is_dir():
            dest.mkdir(exist_ok=True)
            dest.chmod(0o755)
        elif rel not in answers:
            _replace_link(dest, src)
    return refresh(tree, pxe_dir, cluster, night, now)
