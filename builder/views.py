"""Per-node view models: everything a template needs, computed in Python.

Templates only loop and substitute; every list here is sorted and every string final.
Nothing reads the clock, the host or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from chaosnode import ipsec
from chaosnode.contract.night import NightSettings
from chaosnode.contract.node import NodeSettings
from chaosnode.contract.slurm import SlurmSettings
from chaosnode.paths import (
    CA_CERT,
    MUNGE_KEY,
    NFT_PEER_SET,
    NFT_TABLE,
    NODE_CERT,
    TYD_EXPORTS,
    VICI_SOCKET,
)

from .head.view import HEAD_COUNTERS, head_fields, head_slurm_conf
from .model import (
    MIGRATION_PORTS,
    SLURMCTLD_PORT,
    SLURMD_PORT,
    SRUN_PORTS,
    Addressing,
    Cluster,
    Node,
    Role,
    Scope,
    Service,
)
from .tydconf import HEADER, tyd_config_json

SWANCTL_PLUGINS = "random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pem openssl"
CHARON_PLUGINS = ("random nonce x509 revocation constraints pubkey pkcs1 pkcs8 pem openssl "
                  "kdf kernel-netlink socket-default vici updown")

# Named counters on every drop rule: (name, what it counts).
COUNTERS = (
    ("drop_ike_outsider", "IKE from an address that is not a member"),
    ("drop_esp_outsider", "ESP from an address that is not a member"),
    ("drop_member_plaintext", "member traffic that should have been IPsec but was not"),
    ("drop_invalid", "conntrack-invalid packets"),
    ("drop_input", "everything else (default deny)"),
    ("drop_forward", "forwarded packets (nodes never route)"),
    ("drop_output_plaintext", "our own traffic to members that would leave unprotected"),
)
# With a Slurm workload: Slurm's ports reached by someone who is not a member.
SLURM_COUNTERS = (
    ("drop_slurm_outsider", "slurmctld, slurmd or srun ports from an address that is not a "
     "member"),
)
# Templates only some nodes get, by the view field that says so; every other template goes
# to every node.
ONLY_FOR = {
    "etc/chaos/slurm.json.j2": "slurm",
    "etc/default/munge.j2": "slurm",
    "etc/default/slurmd.j2": "slurm_compute",
    "etc/slurm/slurm.conf.j2": "slurm_head",
    "etc/slurm/cgroup.conf.j2": "slurm_head",
    "etc/chaos/users.conf.j2": "users_conf",
    "etc/ssh/sshd_config.d/chaos.conf.j2": "head_always_on",
    "etc/exports.d/chaos.exports.j2": "head_always_on",
    "etc/chaos/statedisk.json.j2": "head_always_on",
    "etc/systemd/system/home.mount.j2": "home_client",
    "etc/systemd/system/home.automount.j2": "home_client",
    "etc/systemd/system/multi-user.target.d/chaos-home.conf.j2": "home_client",
}
# cgroup.conf: slurmd initializes its cgroup plugin whatever ProctrackType says; without D-Bus
# (not in the image) it must not ask systemd for a scope.
SLURM_CGROUP_CONF = (("CgroupPlugin", "cgroup/v2"), ("IgnoreSystemd", "yes"))


@dataclass(frozen=True)
class Peer:
    name: str
    fqdn: str
    address: str


@dataclass(frozen=True)
class NodeView:
    cluster: str
    name: str
    fqdn: str
    address: str
    prefixlen: int
    subnet: str
    mac: str
    dhcp: bool
    gateway: str
    dns: tuple[str, ...]
    scope: str
    hosts: tuple[Peer, ...]  # this node and its known peers; chaosnode.hosts adds the rest
    peers: tuple[Peer, ...]  # known_peers(): the hubs, or everyone on a hub
    peer_addresses: str  # "a, b, c" for nft set elements and swanctl lists
    connections: tuple[str, ...]  # the body of swanctl.conf's `connections`, line by line
    protected_ports: str  # "7411, 12820, 13333"
    input_rules: tuple[str, ...]  # admin services, as nft rule bodies
    counters: tuple[tuple[str, str], ...]
    charon_plugins: str
    vici_socket: str
    swanctl_plugins: str
    nft_table: str
    nft_set: str
    tyd_json: str
    roles: tuple[str, ...]
    allow_ping: bool
    enroll_url: str  # "" when serve.address is not set: the node cannot enroll
    key_type: str
    attestation: str  # "tpm" or "approval": how chaos-enroll proves this machine
    node_json: str  # chaosnode.contract.node.NodeSettings: the node's public settings
    night_json: str  # chaosnode.contract.night.NightSettings: when this node's night ends
    time_source: str  # NTP server for systemd-timesyncd; "" when there is none
    workload: str  # slurm, slurm+mpi or none
    slurm: bool  # the cluster runs Slurm
    slurm_head: bool  # this node runs slurmctld
    slurm_compute: bool  # this node runs a dynamic slurmd
    slurm_ports: str  # "6817, 6818, 60001-60100" for nft
    slurm_json: str  # /etc/chaos/slurm.json for chaos-slurm
    slurm_conf: tuple[tuple[str, str], ...]  # the head's slurm.conf, key = value in order
    slurm_partition: str
    slurm_cgroup_conf: tuple[tuple[str, str], ...]
    slurmd_options: str
    munge_key: str  # where munged finds the key enrollment brought (tmpfs)
    # the always-on head and the users (builder/head/view.py)
    users_conf: tuple[str, ...]  # systemd-sysusers lines of chaos.yaml's users
    head_always_on: bool  # this node is the always-on head
    home_client: bool  # this compute node mounts /home from the always-on head
    home_source: str  # "head:/var/lib/chaos/state/home"
    home_options: str
    login_from: str  # "a/n, b/m" for nft; "" when nobody logs in
    ssh_port: int
    nfs_port: int
    sshd_conf: tuple[tuple[str, str], ...]
    exports: tuple[str, ...]
    statedisk_json: str


def fqdn(cluster: Cluster, node: Node) -> str:
    return f"{node.name}.{cluster.cluster.domain}"


def protected_ports(cluster: Cluster) -> tuple[int, ...]:
    """TCP ports that must only ever cross the network inside IPsec."""
    return tuple(sorted({cluster.tyd.port, *MIGRATION_PORTS}))


def node_services(cluster: Cluster, node: Node) -> tuple[Service, ...]:
    return (*cluster.firewall.services, *node.services)


def service_rule(svc: Service, scope: Scope) -> str:
    if svc.source == "cluster":
        match = f"ip saddr @{NFT_PEER_SET} "
        match += "meta ipsec exists " if scope is Scope.ALL else ""
    elif svc.source == "any":
        match = ""
    else:
        match = f"ip saddr {svc.source} "
    label = svc.name or f"{svc.protocol.value}-{svc.port}"
    return f'{match}{svc.protocol.value} dport {svc.port} accept comment "{label}"'


def ipsec_policy(cluster: Cluster, node: Node) -> ipsec.Policy:
    sec = cluster.security
    return ipsec.Policy(address=node.address, ike_proposals=sec.ike_proposals,
                        esp_proposals=sec.esp_proposals, rekey_minutes=sec.rekey_minutes,
                        dpd_seconds=ipsec.DPD_SECONDS, scope=sec.scope.value,
                        protected_ports=protected_ports(cluster))


def swanctl_lines(section: ipsec.Section, depth: int = 1) -> tuple[str, ...]:
    """A nested section in swanctl.conf syntax, in the definition's order, one line each."""
    pad = "    " * depth
    out: list[str] = []
    for key, value in section.items():
        if isinstance(value, dict):
            out += [f"{pad}{key} {{", *swanctl_lines(value, depth + 1), f"{pad}}}"]
        else:
            out.append(f"{pad}{key} = {value if isinstance(value, str) else ', '.join(value)}")
    return tuple(out)


def connections(policy: ipsec.Policy, peers: tuple[Peer, ...]) -> tuple[str, ...]:
    certs = ipsec.Certs(node=NODE_CERT, ca=CA_CERT)
    section: ipsec.Section = {}
    for p in peers:
        section.update(ipsec.connection(policy, p.name, IPv4Address(p.address), certs))
    return swanctl_lines(section)


def all_peers(cluster: Cluster) -> tuple[Peer, ...]:
    return tuple(Peer(n.name, fqdn(cluster, n), str(n.address)) for n in cluster.nodes)


def hubs(cluster: Cluster) -> frozenset[str]:
    """The nodes every node must reach in order to join: the tyd seeds and the Slurm heads."""
    return frozenset(n.name for n in (*cluster.seeds, *cluster.heads))


def known_peers(cluster: Cluster, node: Node, everyone: tuple[Peer, ...],
                hub_names: frozenset[str]) -> tuple[Peer, ...]:
    """The peers rendered into a node's files (swanctl.conf, the nft set, /etc/hosts).

    A hub knows every node: it must accept IKE from a member it has never heard of (the
    IKE identity is bound to each peer's address, so there is no wildcard responder). Any
    other node knows only the hubs, a constant number; tyd adds every other peer at run
    time through the same connection definition (tyd.ipsec, tyd.nft) once it has verified
    that member's signed record. So a node's overlay does not grow with the cluster, except
    on the few hubs."""
    if node.name in hub_names:
        return tuple(p for p in everyone if p.name != node.name)
    return tuple(p for p in everyone if p.name in hub_names and p.name != node.name)


def hosts(node: Node, everyone: tuple[Peer, ...], peers: tuple[Peer, ...]) -> tuple[Peer, ...]:
    """/etc/hosts: this node and its known peers, in chaos.yaml's order."""
    names = {node.name, *(p.name for p in peers)}
    return tuple(p for p in everyone if p.name in names)


def node_view(cluster: Cluster, node: Node, everyone: tuple[Peer, ...] | None = None,
              hub_names: frozenset[str] | None = None) -> NodeView:
    everyone = everyone if everyone is not None else all_peers(cluster)
    hub_names = hub_names if hub_names is not None else hubs(cluster)
    peers = known_peers(cluster, node, everyone, hub_names)
    net = cluster.network
    sec = cluster.security
    policy = ipsec_policy(cluster, node)
    return NodeView(
        cluster=cluster.cluster.name,
        name=node.name,
        fqdn=fqdn(cluster, node),
        address=str(node.address),
        prefixlen=net.subnet.prefixlen,
        subnet=str(net.subnet),
        mac=node.mac,
        dhcp=net.addressing is Addressing.DHCP,
        gateway=str(net.gateway) if net.gateway else "",
        dns=tuple(str(d) for d in net.dns),
        scope=sec.scope.value,
        hosts=hosts(node, everyone, peers),
        peers=peers,
        peer_addresses=", ".join(p.address for p in peers),
        connections=connections(policy, peers),
        protected_ports=", ".join(str(p) for p in protected_ports(cluster)),
        input_rules=tuple(service_rule(s, sec.scope) for s in node_services(cluster, node)),
        counters=COUNTERS + (SLURM_COUNTERS if cluster.workload.slurm else ())
        + (HEAD_COUNTERS if node == cluster.always_on_head else ()),
        charon_plugins=CHARON_PLUGINS,
        vici_socket=VICI_SOCKET,
        swanctl_plugins=SWANCTL_PLUGINS,
        nft_table=NFT_TABLE,
        nft_set=NFT_PEER_SET,
        tyd_json=tyd_config_json(cluster, node, tuple(p.address for p in peers), policy),
        roles=tuple(r.value for r in node.roles),
        allow_ping=cluster.firewall.allow_ping,
        enroll_url=enroll_url(cluster),
        key_type=sec.key_type.value,
        attestation=node.attestation.value,
        node_json=node_settings(cluster, node).dumps(HEADER),
        night_json=night_settings(cluster, node).dumps(HEADER),
        time_source=time_source(cluster),
        **slurm_fields(cluster, node),
        **head_fields(cluster, node),
    )


def slurm_fields(cluster: Cluster, node: Node) -> dict[str, Any]:
    """The Slurm parts of a node's view (chaos.yaml workload)."""
    head = cluster.heads[0]
    is_head = cluster.workload.slurm and node in cluster.heads
    compute = cluster.workload.slurm and Role.COMPUTE in node.roles
    settings = SlurmSettings(workload=cluster.workload.value, node=node.name, head=head.name,
                             head_address=str(head.address), slurmctld=is_head, slurmd=compute,
                             tyd_map=TYD_EXPORTS["json"], munge_key=MUNGE_KEY)
    return {
        "workload": cluster.workload.value,
        "slurm": cluster.workload.slurm,
        "slurm_head": is_head,
        "slurm_compute": compute,
        "slurm_ports": f"{SLURMCTLD_PORT}, {SLURMD_PORT}, {SRUN_PORTS[0]}-{SRUN_PORTS[1]}",
        "slurm_json": settings.dumps(HEADER),
        "slurm_conf": head_slurm_conf(cluster, slurm_conf(cluster, head)),
        "slurm_partition": SLURM_PARTITION,
        "slurm_cgroup_conf": SLURM_CGROUP_CONF,
        "slurmd_options": f"-Z --conf-server {head.address}:{SLURMCTLD_PORT}",
        "munge_key": MUNGE_KEY,
    }


SLURM_PARTITION = "PartitionName=chaos Nodes=ALL Default=YES MaxTime=INFINITE State=UP"


def slurm_conf(cluster: Cluster, head: Node) -> tuple[tuple[str, str], ...]:
    """slurm.conf of the head, served to every slurmd (configless). Dynamic nodes (slurmd -Z)
    need MaxNodeCount, select/cons_tres and TreeWidth=65533; they join the partition through
    Nodes=ALL. Jobs run on a RAM root: no accounting, no cgroup setup."""
    return (
        ("ClusterName", cluster.cluster.name),
        ("SlurmctldHost", f"{head.name}({head.address})"),
        ("SlurmctldParameters", "enable_configless"),
        ("SlurmctldPort", str(SLURMCTLD_PORT)),
        ("SlurmdPort", str(SLURMD_PORT)),
        ("SrunPortRange", f"{SRUN_PORTS[0]}-{SRUN_PORTS[1]}"),
        ("AuthType", "auth/munge"),
        ("SlurmUser", "slurm"),
        ("StateSaveLocation", "/var/lib/slurm/slurmctld"),
        ("SlurmdSpoolDir", "/var/lib/slurm/slurmd"),
        ("MaxNodeCount", str(len(cluster.nodes))),
        ("TreeWidth", "65533"),
        ("SelectType", "select/cons_tres"),
        ("SelectTypeParameters", "CR_Core"),
        ("SchedulerType", "sched/backfill"),
        ("ProctrackType", "proctrack/linuxproc"),
        ("TaskPlugin", "task/none"),
        ("JobAcctGatherType", "jobacct_gather/none"),
        ("AccountingStorageType", "accounting_storage/none"),
        ("JobCompType", "jobcomp/none"),
        ("MpiDefault", "pmix" if cluster.workload.mpi else "none"),
        # a node that comes back (rebooted, rejoined) takes jobs again by itself
        ("ReturnToService", "2"),
        # chaos-slurm removes a node as soon as tyd does; this is only the fallback
        ("SlurmdTimeout", str(max(60, 2 * cluster.tyd.remove_after_seconds))),
    )


def time_source(cluster: Cluster) -> str:
    """Where nodes set their clock: schedule.time_source, else the serve host."""
    source = cluster.schedule.time_source or cluster.serve.address
    return str(source) if source else ""


def node_settings(cluster: Cluster, node: Node) -> NodeSettings:
    return NodeSettings(name=node.name, fqdn=fqdn(cluster, node), address=str(node.address),
                        mac=node.mac, cluster=cluster.cluster.name,
                        scope=cluster.security.scope.value, enroll_url=enroll_url(cluster),
                        push_url=push_url(cluster),
                        key_type=cluster.security.key_type.value,
                        attestation=node.attestation.value)


def night_settings(cluster: Cluster, node: Node) -> NightSettings:
    sched = cluster.schedule
    return NightSettings(node=node.name, windows=sched.windows, time_zone=sched.time_zone,
                         whole_days=tuple(d.value for d in sched.whole_days),
                         holidays=tuple(d.isoformat() for d in sched.holidays),
                         stop_new_work_before=sched.stop_new_work_before,
                         morning=sched.morning.value, time_source=time_source(cluster),
                         always_on=node.always_on)


def enroll_url(cluster: Cluster) -> str:
    """Where nodes enroll: the serve host's enrollment service (HTTPS, cluster-CA cert)."""
    serve = cluster.serve
    return f"https://{serve.address}:{serve.enroll_port}" if serve.address else ""


def push_url(cluster: Cluster) -> str:
    """Where members push facts about themselves (builder/admin/push.py, mutual TLS)."""
    serve = cluster.serve
    return f"https://{serve.address}:{serve.push_port}" if serve.address else ""


def is_compute(node: Node) -> bool:
    return Role.COMPUTE in node.roles
