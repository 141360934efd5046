"""What the live image is made of: its Debian packages and the node-side Python packages."""

from __future__ import annotations

from builder.model import Workload

# Everything the live image runs; the admin's image.packages are added to this.
# strongSwan's openssl plugin provides X25519, Ed25519, AES-GCM and ChaCha20-Poly1305.
BASE_PACKAGES = (
    "linux-image-amd64", "systemd", "systemd-sysv", "udev", "kmod",
    "charon-systemd", "strongswan-swanctl", "libstrongswan-standard-plugins",
    "nftables", "iproute2", "python3",
    # /etc/protocols and /etc/services: charon resolves selectors like 10.0.0.1/32[tcp/7411]
    # through them; without netbase a port-scoped config is "invalid value for: local_ts".
    "netbase",
    # enrollment: the node proves its machine with its TPM 2.0 (chaosnode.tpm through
    # tpm2-pytss over /dev/tpmrm0) and makes its key and CSR with python3-cryptography
    "python3-tpm2-pytss", "libtss2-tcti-device0", "python3-cryptography",
    # the night (chaosnode.morning): the window's time zone rules, and the clock from
    # schedule.time_source
    "tzdata", "systemd-timesyncd",
    # the always-on head (issue 21): its sshd for the users (host keys deleted at build, the
    # head makes its own on the state disk), the homes over NFSv4 (nfsd on the head, mount.nfs
    # on the compute nodes) and mkfs.ext4 for a blank state disk. One image serves every
    # node: on the others ssh, nfs-server and rpcbind never start (base.DISABLE_UNITS;
    # overlays/head enables them on the head only).
    *("openssh-server", "nfs-kernel-server", "nfs-common", "e2fsprogs"),
)

# The workload (chaos.yaml `workload`). One image serves every node, so each node has
# slurmctld and slurmd; chaos-slurm starts the ones its roles ask for. bookworm's Slurm
# (22.05) authenticates with munge only (auth/slurm is 23.11+). slurm-client: srun, sbatch,
# sinfo, scontrol. Open MPI (4.1.4) is launched by srun through PMIx (slurm's mpi_pmix plugin
# loads libpmix2), so no ssh key exists; python3-mpi4py runs MPI programs without a compiler
# in the image. openmpi-bin pulls in openssh-client, which nothing uses.
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


def image_packages(workload: Workload, extra: tuple[str, ...]) -> tuple[str, ...]:
    """Every Debian package of the image, sorted: base, workload and the admin's."""
    return tuple(sorted({*BASE_PACKAGES, *WORKLOAD_PACKAGES[workload], *extra}))


# The Python packages that run on the nodes, copied from the checkout into the image.
NODE_PACKAGES = ("tyd", "chaosnode")
