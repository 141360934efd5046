"""Where things live on a node: one declaration, imported by the builder and the node alike."""

from __future__ import annotations

from typing import Final

SWANCTL_DIR: Final = "/etc/swanctl"
NODE_CERT: Final = "node.pem"
NODE_KEY: Final = "node.key"
CA_CERT: Final = "ca.pem"
CRL: Final = "cluster.crl"

NODE_CERT_PATH: Final = f"{SWANCTL_DIR}/x509/{NODE_CERT}"
NODE_KEY_PATH: Final = f"{SWANCTL_DIR}/private/{NODE_KEY}"
CA_CERT_PATH: Final = f"{SWANCTL_DIR}/x509ca/{CA_CERT}"
CRL_PATH: Final = f"{SWANCTL_DIR}/x509crl/{CRL}"

# the kernel's TPM resource manager: it flushes what a client leaves behind
TPM_DEVICE: Final = "/dev/tpmrm0"
# the firmware's UEFI event log (TCG crypto-agile), sent with the measured-boot quote
EVENT_LOG: Final = "/sys/kernel/security/tpm0/binary_bios_measurements"

VICI_SOCKET: Final = "/run/charon.vici"
NFT_TABLE: Final = "chaos"
NFT_PEER_SET: Final = "cluster_peers"

# The node's public settings, rendered by chaos-build and picked by MAC at boot.
NODE_JSON: Final = "/etc/chaos/node.json"
HOSTS_FILE: Final = "/etc/hosts"  # rendered for the hubs; chaos-hosts adds tyd's members
TYD_CONFIG: Final = "/etc/tyd/tyd.json"
# The night window as this node knows it (chaosnode.contract.night.NightSettings).
NIGHT_JSON: Final = "/etc/chaos/night.json"

# The node's interpreter (Debian's python3): every node program runs as `python3 -I -m ...`.
NODE_PYTHON: Final = "/usr/bin/python3"

# Slurm (chaos.yaml workload). The cluster's munge key arrives with the certificate at
# enrollment and lives only in RAM; slurm.json says what this node runs (rendered).
MUNGE_KEY: Final = "/run/chaos/munge.key"
# the service's refusal of this boot (tmpfs): a later start of chaos-enroll asks no more
ENROLL_REFUSED: Final = "/run/chaos/enroll-refused"
MUNGE_USER: Final = "munge"
SLURM_JSON: Final = "/etc/chaos/slurm.json"
SLURM_CONF: Final = "/etc/slurm/slurm.conf"

TYD_RUN: Final = "/run/tyd"
TYD_EXPORTS: Final = {
    "json": f"{TYD_RUN}/map.json",
    "mosix": f"{TYD_RUN}/mosix.map",
    "hostfile": f"{TYD_RUN}/hostfile",
    "status": f"{TYD_RUN}/status.json",
}


def in_root(path: str) -> str:
    """A node path relative to the node's root (for overlay trees and cpio archives)."""
    return path.lstrip("/")


# A shared ISO carries every node's public overlay here; chaosnode.identity picks one by MAC.
NODE_BUNDLE: Final = "/usr/lib/chaos/nodes"
# The QEMU test agent's virtio-serial port: only a hypervisor can create it.
AGENT_PORT: Final = "/dev/virtio-ports/org.chaos.agent"

# The always-on head (issue 21): its state disk, formatted by chaosnode.statedisk only when
# blank, carries chaos's label and is mounted here; the homes are exported from it (NFSv4)
# and mounted at /home on every node; slurmctld keeps its state on it.
STATE_DISK_JSON: Final = "/etc/chaos/statedisk.json"
STATE_LABEL: Final = "chaos-state"
STATE_MOUNT: Final = "/var/lib/chaos/state"
STATE_HOME: Final = f"{STATE_MOUNT}/home"
STATE_SLURMCTLD: Final = f"{STATE_MOUNT}/slurmctld"
STATE_SSH: Final = f"{STATE_MOUNT}/ssh"
HOME: Final = "/home"
# root-owned keys from chaos.yaml: users cannot add keys of their own
AUTHORIZED_KEYS_DIR: Final = "/etc/ssh/authorized_keys"
# chaos.yaml's users, as systemd-sysusers lines (chaos-users.service runs the program on them)
USERS_CONF: Final = "/etc/chaos/users.conf"
SYSUSERS_PROGRAM: Final = "/usr/bin/systemd-sysusers"

# Member pushes to serve (issue 23, chaosnode.push): what the head's Slurm timer pushed last
# (only changes are pushed again) and whether its last push failed (said once), in RAM.
PUSH_JOBS_STATE: Final = "/run/chaos/push-jobs.json"
