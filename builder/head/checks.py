"""Cross-checks of the always-on head and the users: the head feature's Feature.check."""

from __future__ import annotations

from ..checks import Report
from ..firewall.model import FirewallModel
from ..loader import Document
from ..model import Cluster, Protocol, Role, Scope
from ..security.model import SecurityModel
from .model import HeadModel
from .users import FIRST_UID, SYSTEM_NAMES, key_problem

SSH_PORT = 22
NFS_PORT = 2049


def check(cluster: Cluster, doc: Document, report: Report) -> None:
    """The head feature's Feature.check."""
    raw_users = doc.data.get("users") if isinstance(doc.data, dict) else None
    check_head(cluster, report, len(raw_users) if isinstance(raw_users, list) else 0)


def check_head(cluster: Cluster, report: Report, inline_users: int) -> None:
    """inline_users: how many of the users chaos.yaml lists itself; the users file's
    follow them (their own lines are checked as the file is read)."""
    _check_users(cluster, report, inline_users)
    always = [i for i, n in enumerate(cluster.nodes) if n.always_on]
    for i, node in enumerate(cluster.nodes):
        if node.always_on and Role.HEAD not in node.roles:
            report(
                ("nodes", i, "always_on"),
                f"{node.name} is always on but not a head; only "
                "the head is a permanent member: add head to its roles or remove always_on",
            )
        elif node.always_on and not node.state_disk:
            report(
                ("nodes", i, "always_on"),
                f"the always-on head {node.name} has no "
                "state_disk: the queue and the homes need a persistent disk; add "
                "state_disk: /dev/disk/by-id/... (see ls -l /dev/disk/by-id on it)",
            )
        if node.state_disk and not node.always_on:
            report(
                ("nodes", i, "state_disk"),
                f"{node.name} is a lab PC of the night, whose "
                "disks chaos never touches; a state_disk is only for the always-on head "
                "(add always_on: true and role head) or remove it",
            )
    for i in always[1:]:
        report(
            ("nodes", i, "always_on"),
            f"{cluster.nodes[i].name} is a second always-on "
            f"node (nodes[{always[0]}] {cluster.nodes[always[0]].name} is one); keep one",
        )
    head = cluster.always_on_head
    if cluster.section(HeadModel).login_from and head is None:
        report(
            ("login_from",),
            "there is no always-on head for users to log in to; mark the "
            "head always_on: true with a state_disk, or remove login_from",
        )
    if head is not None and cluster.section(SecurityModel).security.scope is not Scope.ALL:
        report(
            ("security", "scope"),
            "the always-on head exports the homes over NFS, which "
            "only scope all puts into IPsec; use scope all",
        )
    if head is not None:
        i = cluster.nodes.index(head)
        services = [*cluster.section(FirewallModel).firewall.services, *head.services]
        for svc in services:
            if svc.protocol is Protocol.TCP and svc.port in (SSH_PORT, NFS_PORT):
                report(
                    ("nodes", i, "services"),
                    f"tcp {svc.port} on the always-on head is "
                    "opened by chaos itself (sshd from login_from, NFS for members through "
                    "IPsec); remove this service",
                )


def _check_users(cluster: Cluster, report: Report, inline: int) -> None:
    names: dict[str, int] = {}
    uids: dict[int, int] = {}
    gids: dict[int, int] = {}
    for i, user in enumerate(cluster.section(HeadModel).users):
        where = ("users", i) if i < inline else ("users_file",)
        label = f"users[{i}] ({user.name})" if i < inline else f"{user.name} of users_file"
        if user.name in SYSTEM_NAMES:
            report(
                (*where, "name") if len(where) == 2 else where,
                f"{user.name} is an account of the image already; pick another login name",
            )
        for attr in ("uid", "gid"):
            value = getattr(user, attr)
            if value < FIRST_UID or value == 65534:
                report(
                    (*where, attr) if len(where) == 2 else where,
                    f"{label}: {attr} {value} is reserved for system accounts (below "
                    f"{FIRST_UID}, or nobody's 65534); pick {FIRST_UID} or more",
                )
        if user.name in names:
            report(
                (*where, "name") if len(where) == 2 else where,
                f"user {user.name} is already declared as users[{names[user.name]}]; keep one",
            )
        elif user.uid in uids:
            other = cluster.section(HeadModel).users[uids[user.uid]].name
            report(
                (*where, "uid") if len(where) == 2 else where,
                f"uid {user.uid} is "
                f"already {other}'s (users[{uids[user.uid]}]); each user needs their own",
            )
        elif user.gid in gids:
            other = cluster.section(HeadModel).users[gids[user.gid]].name
            report(
                (*where, "gid") if len(where) == 2 else where,
                f"gid {user.gid} is "
                f"already the group of {other} (users[{gids[user.gid]}]); each user gets "
                "a group of their own name: pick another gid",
            )
        gids.setdefault(user.gid, i)
        names.setdefault(user.name, i)
        uids.setdefault(user.uid, i)
        if len(where) == 2:
            for j, key in enumerate(user.ssh_keys):
                why = key_problem(key)
                if why:
                    report((*where, "ssh_keys", j), why)
