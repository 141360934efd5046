"""The always-on head and the users (overlays/head/): sysusers, sshd, NFS exports, the state
disk and the compute nodes' /home mount; what they need is computed in builder/head/view.py,
its model section and checks are builder/head/model.py and checks.py."""

from __future__ import annotations

from ..head.checks import check
from ..head.model import HeadModel
from ..head.users import with_users_file
from ..head.view import HEAD_COUNTERS, authorized_keys, head_fields
from ..model import Cluster, Node
from ..views import NodeView
from .feature import Counters, Feature, Fields


def fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    return head_fields(cluster, node)


def counters(cluster: Cluster, node: Node) -> Counters:
    return HEAD_COUNTERS if node == cluster.always_on_head else ()


def head_packages(cluster: Cluster) -> tuple[str, ...]:
    return ("openssh-server", "nfs-kernel-server", "nfs-common", "e2fsprogs")


FEATURE = Feature(
    name="head",
    fields=fields,
    only_for={
        "etc/chaos/users.conf.j2": "users_conf",
        "etc/ssh/sshd_config.d/chaos.conf.j2": "head_always_on",
        "etc/exports.d/chaos.exports.j2": "head_always_on",
        "etc/chaos/statedisk.json.j2": "head_always_on",
        "etc/systemd/system/home.mount.j2": "home_client",
        "etc/systemd/system/home.automount.j2": "home_client",
        "etc/systemd/system/multi-user.target.d/chaos-home.conf.j2": "home_client",
    },
    # each does nothing without its rendered file
    units=("chaos-users.service", "chaos-statedisk.service"),
    counters=counters,
    files=authorized_keys,  # each user's ssh keys on the head
    # the head's sshd for the users (host keys deleted at build, the head makes its own on the
    # state disk), the homes over NFSv4 (nfsd on the head, mount.nfs on the compute nodes) and
    # mkfs.ext4 for a blank state disk. One image serves every node: elsewhere ssh,
    # nfs-server and rpcbind never start (disable_units, and the 10-chaos-head preset);
    # overlays/head/always-on enables them on the head only.
    packages=head_packages,
    disable_units=(
        "ssh.service",
        "nfs-server.service",
        "rpcbind.service",
        "rpcbind.socket",
        # pNFS block layout: it looks for block devices, which no node uses
        "nfs-blkmap.service",
        # e2fsprogs' online checks of LVM snapshots (no node has LVM); e2scrub_all's start
        # at boot triggered home.automount before the network was up (day-and-night lab)
        "e2scrub_all.timer",
        "e2scrub_reap.service",
    ),
    own_root="always-on",
    model=HeadModel,  # users, users_file, login_from: after nodes in the reference
    model_after="nodes",
    check=check,
    finish=with_users_file,
)
