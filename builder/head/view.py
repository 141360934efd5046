"""What the templates of the always-on head and its users need, computed here."""

from __future__ import annotations

import json
from typing import Any

from chaosnode.paths import (
    AUTHORIZED_KEYS_DIR,
    HOME,
    STATE_HOME,
    STATE_LABEL,
    STATE_MOUNT,
    STATE_SLURMCTLD,
    STATE_SSH,
    in_root,
)

from ..model import Cluster, Node, Role
from ..tydconf import HEADER
from .checks import NFS_PORT, SSH_PORT
from .model import HeadModel

# Named counters of the head's firewall (with the ones of builder/views.py COUNTERS).
HEAD_COUNTERS = (
    ("drop_ssh_member", "sshd from a member's address (members never log in to the head)"),
    ("drop_ssh_outsider", "sshd from an address outside login_from"),
    ("drop_nfs_outsider", "NFS from an address that is not a member through IPsec"),
)
SSH_HOST_KEY = f"{STATE_SSH}/ssh_host_ed25519_key"
# NFSv4 over TCP only, sec=sys: IPsec (scope all) authenticates the member and protects the
# traffic; root on a member is squashed.
EXPORT_OPTIONS = "rw,sync,no_subtree_check,root_squash,sec=sys"
MOUNT_OPTIONS = "vers=4.2,proto=tcp,sec=sys,hard,nosuid,nodev"


def sshd_config(cluster: Cluster, head: Node) -> tuple[tuple[str, str], ...]:
    """The head's sshd: keys from chaos.yaml only, no root, no passwords, the users only."""
    names = " ".join(u.name for u in cluster.section(HeadModel).users)
    return (
        ("ListenAddress", f"{head.address}:{SSH_PORT}"),
        ("HostKey", SSH_HOST_KEY),
        ("PermitRootLogin", "no"),
        ("PasswordAuthentication", "no"),
        ("KbdInteractiveAuthentication", "no"),
        ("PermitEmptyPasswords", "no"),
        ("PubkeyAuthentication", "yes"),
        ("AuthenticationMethods", "publickey"),
        ("AuthorizedKeysFile", f"{AUTHORIZED_KEYS_DIR}/%u"),
        ("AllowUsers" if names else "DenyUsers", names or "*"),
        # PAM for the session only (limits, systemd-logind): the accounts have no password
        ("UsePAM", "yes"),
        ("PermitUserEnvironment", "no"),
        ("AllowAgentForwarding", "no"),
        ("AllowTcpForwarding", "no"),
        ("X11Forwarding", "no"),
        ("PermitTunnel", "no"),
        # scp (OpenSSH 9: the SFTP protocol) and rsync copy results off the head: Debian's
        # sshd_config, which includes this file first, keeps its sftp Subsystem (a second
        # one is an error)
    )


def sysusers_lines(cluster: Cluster) -> tuple[str, ...]:
    """systemd-sysusers lines: a group of each user's name and the user; no password (the
    shadow entry is locked, `!*`)."""
    out: list[str] = []
    for u in cluster.section(HeadModel).users:
        out.append(f"g {u.name} {u.gid}")
        out.append(f'u {u.name} {u.uid}:{u.gid} "chaos user {u.name}" {HOME}/{u.name} /bin/bash')
    return tuple(out)


def exports_lines(cluster: Cluster, head: Node) -> tuple[str, ...]:
    members = " ".join(f"{n.address}({EXPORT_OPTIONS})" for n in cluster.nodes if n != head)
    return (f"{STATE_HOME} {members}",) if members else ()


def statedisk_json(cluster: Cluster, head: Node) -> str:
    doc = {
        "_generated": HEADER,
        "disk": head.state_disk,
        "label": STATE_LABEL,
        "mount": STATE_MOUNT,
        "home": STATE_HOME,
        "slurmctld": STATE_SLURMCTLD,
        "ssh": STATE_SSH,
        "users": [
            {"name": u.name, "uid": u.uid, "gid": u.gid} for u in cluster.section(HeadModel).users
        ],
    }
    return json.dumps(doc, indent=1)


def head_fields(cluster: Cluster, node: Node) -> dict[str, Any]:
    """The head parts of a node's view (always_on, users, login_from)."""
    head = cluster.always_on_head
    is_head = head is not None and node == head
    return {
        "users_conf": sysusers_lines(cluster),
        "head_always_on": is_head,
        "home_client": head is not None and not is_head and Role.COMPUTE in node.roles,
        "home_source": f"{head.address}:{STATE_HOME}" if head else "",
        "home_options": MOUNT_OPTIONS,
        "login_from": ", ".join(str(n) for n in cluster.section(HeadModel).login_from),
        "ssh_port": SSH_PORT,
        "nfs_port": NFS_PORT,
        "sshd_conf": sshd_config(cluster, head) if is_head and head else (),
        "exports": exports_lines(cluster, head) if is_head and head else (),
        "statedisk_json": statedisk_json(cluster, head) if is_head and head else "",
    }


def authorized_keys(cluster: Cluster, node: Node) -> dict[str, bytes]:
    """The head's authorized keys, one root-owned file per user (sshd's %u)."""
    if cluster.always_on_head != node:
        return {}
    return {
        in_root(f"{AUTHORIZED_KEYS_DIR}/{u.name}"): (
            f"# {HEADER}\n" + "".join(f"{k}\n" for k in u.ssh_keys)
        ).encode()
        for u in cluster.section(HeadModel).users
    }


def head_slurm_conf(
    cluster: Cluster, conf: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """slurm.conf of an always-on head: state on the state disk, jobs requeued when their
    node leaves at the night's end (a job opts out with --no-requeue)."""
    if cluster.always_on_head is None:
        return conf
    out = tuple((k, STATE_SLURMCTLD if k == "StateSaveLocation" else v) for k, v in conf)
    return (*out, ("JobRequeue", "1"))
