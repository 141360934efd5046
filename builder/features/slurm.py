"""The Slurm workload (overlays/slurm/): slurm.json for chaos-slurm, munge and slurmd defaults,
the head's slurm.conf and cgroup.conf; its model section and checks are builder/slurm/, the node
side chaosnode/slurm.py, the key builder/mungekey.py.
"""

from __future__ import annotations

from chaosnode.contract.slurm import SlurmSettings
from chaosnode.paths import MUNGE_KEY, TYD_EXPORTS

from ..head.view import head_slurm_conf
from ..model import SLURMCTLD_PORT, SLURMD_PORT, SRUN_PORTS, Cluster, Node, Role
from ..slurm.checks import check_workload
from ..slurm.model import SlurmModel, Workload
from ..tyd.model import TydModel
from ..tydconf import HEADER
from ..views import NodeView
from .feature import Counters, Feature, Fields

# With a Slurm workload: Slurm's ports reached by someone who is not a member.
SLURM_COUNTERS = (
    ("drop_slurm_outsider", "slurmctld, slurmd or srun ports from an address that is not a member"),
)
# cgroup.conf: slurmd initializes its cgroup plugin whatever ProctrackType says; without D-Bus
# (not in the image) it must not ask systemd for a scope.
SLURM_CGROUP_CONF = (("CgroupPlugin", "cgroup/v2"), ("IgnoreSystemd", "yes"))
SLURM_PARTITION = "PartitionName=chaos Nodes=ALL Default=YES MaxTime=INFINITE State=UP"

# One image serves every node, so each node has slurmctld and slurmd; chaos-slurm starts the
# ones its roles ask for. bookworm's Slurm (22.05) authenticates with munge only (auth/slurm
# is 23.11+). slurm-client: srun, sbatch, sinfo, scontrol. Open MPI (4.1.4) is launched by
# srun through PMIx (slurm's mpi_pmix plugin loads libpmix2), so no ssh key exists;
# python3-mpi4py runs MPI programs without a compiler in the image. openmpi-bin pulls in
# openssh-client, which nothing uses.
SLURM_PACKAGES = ("slurmd", "slurmctld", "slurm-client", "munge")
MPI_PACKAGES = ("openmpi-bin", "libpmix2", "python3-mpi4py")
WORKLOAD_PACKAGES: dict[Workload, tuple[str, ...]] = {
    Workload.NONE: (),
    Workload.SLURM: SLURM_PACKAGES,
    Workload.SLURM_MPI: (*SLURM_PACKAGES, *MPI_PACKAGES),
}
# Symbolic links a workload needs that its packages leave out: Slurm's mpi/pmix plugin
# dlopens the unversioned libpmix.so, which only libpmix-dev ships (with the headers of
# libevent, hwloc and zlib); without it `srun --mpi=pmix` says "can not load PMIx library".
WORKLOAD_LINKS: dict[Workload, tuple[tuple[str, str], ...]] = {
    Workload.SLURM_MPI: (("usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so", "libpmix.so.2"),),
}


def fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    """The Slurm parts of a node's view (chaos.yaml workload)."""
    head = cluster.heads[0]
    workload = cluster.section(SlurmModel).workload
    is_head = workload.slurm and node in cluster.heads
    compute = workload.slurm and Role.COMPUTE in node.roles
    settings = SlurmSettings(
        workload=workload.value,
        node=node.name,
        head=head.name,
        head_address=str(head.address),
        slurmctld=is_head,
        slurmd=compute,
        tyd_map=TYD_EXPORTS["json"],
        munge_key=MUNGE_KEY,
    )
    return {
        "workload": workload.value,
        "slurm": workload.slurm,  # the cluster runs Slurm
        "slurm_head": is_head,  # this node runs slurmctld
        "slurm_compute": compute,  # this node runs a dynamic slurmd
        "slurm_ports": f"{SLURMCTLD_PORT}, {SLURMD_PORT}, {SRUN_PORTS[0]}-{SRUN_PORTS[1]}",
        "slurm_json": settings.dumps(HEADER),
        "slurm_conf": head_slurm_conf(cluster, slurm_conf(cluster, head)),
        "slurm_partition": SLURM_PARTITION,
        "slurm_cgroup_conf": SLURM_CGROUP_CONF,
        "slurmd_options": f"-Z --conf-server {head.address}:{SLURMCTLD_PORT}",
        "munge_key": MUNGE_KEY,  # where munged finds the key enrollment brought (tmpfs)
    }


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
        ("MpiDefault", "pmix" if cluster.section(SlurmModel).workload.mpi else "none"),
        # a node that comes back (rebooted, rejoined) takes jobs again by itself
        ("ReturnToService", "2"),
        # chaos-slurm removes a node as soon as tyd does; this is only the fallback
        ("SlurmdTimeout", str(max(60, 2 * cluster.section(TydModel).tyd.remove_after_seconds))),
    )


def counters(cluster: Cluster, node: Node) -> Counters:
    return SLURM_COUNTERS if cluster.section(SlurmModel).workload.slurm else ()


def packages(cluster: Cluster) -> tuple[str, ...]:
    return WORKLOAD_PACKAGES[cluster.section(SlurmModel).workload]


def links(cluster: Cluster) -> tuple[tuple[str, str], ...]:
    return WORKLOAD_LINKS.get(cluster.section(SlurmModel).workload, ())


FEATURE = Feature(
    name="slurm",
    fields=fields,
    only_for={
        "etc/chaos/slurm.json.j2": "slurm",
        "etc/default/munge.j2": "slurm",
        "etc/default/slurmd.j2": "slurm_compute",
        "etc/slurm/slurm.conf.j2": "slurm_head",
        "etc/slurm/cgroup.conf.j2": "slurm_head",
    },
    units=("chaos-slurm.service",),
    # the packages enable these, but they must wait for what only a booted node has (the
    # munge key from enrollment, the head in tyd's map): chaos-slurm.service starts them. A
    # preset in overlays/slurm keeps systemd's first-boot preset from enabling them again.
    disable_units=("munge.service", "slurmd.service", "slurmctld.service"),
    packages=packages,
    links=links,
    counters=counters,
    model=SlurmModel,  # workload:, after schedule: in the reference
    model_after="schedule",
    check=check_workload,
)
