"""The always-on head's model section: chaos.yaml's users, users_file and login_from (a
node's always_on and state_disk are the core Node's), declared once here and named by the
head feature (builder/features/head.py). Its checks: builder/head/checks.py."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..settings import required, setting


@dataclass(frozen=True, kw_only=True)
class User:
    name: str = required("login name", "alice", pattern="user")
    uid: int = required("user id, the same on every node (1000 or more)", 1001, min=0, max=65533)
    gid: int = required("primary group id (a group of the user's name)", 1001, min=0, max=65533)
    ssh_keys: tuple[str, ...] = setting(
        (),
        "OpenSSH public keys (one line of a .pub file each); the head's sshd accepts only these",
        example=["ssh-ed25519 AAAAC3Nza... alice@laptop"],
    )


@dataclass(frozen=True, kw_only=True)
class HeadModel:
    """The head's top-level chaos.yaml keys."""

    users: tuple[User, ...] = setting(
        (),
        "who may use the cluster: every node knows these accounts (no passwords), jobs run as them",
        example=[
            {"name": "alice", "uid": 1001, "gid": 1001, "ssh_keys": ["ssh-ed25519 AAAA... alice"]}
        ],
    )
    users_file: str = setting(
        "",
        "more users, relative to chaos.yaml: lines "
        "name:uid:gid:ssh-public-key (a name may repeat for more keys)",
        example="users.passwd",
    )
    login_from: tuple[ipaddress.IPv4Network, ...] = setting(
        (),
        "networks from which the always-on "
        "head's sshd is reachable (keys only); "
        "never from members",
        example=["192.0.2.0/24"],
    )
