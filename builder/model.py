"""The cluster model: every chaos.yaml setting is declared exactly once, the core's here and a
feature's in its own model section (Feature.model, builder/<feature>/model.py: the night's
schedule:, the head's users), which the loader puts in Cluster.sections (Cluster.section).

Each dataclass field carries its type, default, help text and example (builder/settings.py).
The loader
derives validation from these declarations, `chaos-build reference` derives the
commented reference chaos.yaml, and docs/reference.md (the settings table) comes from the same
place. Instances are frozen: nothing past the loader sees a raw dict.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .settings import required, setting
from .tyd.model import TydModel

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network
T = TypeVar("T")

# openMosix-era migration ports (0x3214, 0x3415), protected in scope `migration`.
MIGRATION_PORTS = (12820, 13333)
IKE_PORTS = (500, 4500)
# Slurm's daemons (slurmctld, slurmd) and the ports srun listens on for its steps
# (SrunPortRange): members only, through IPsec only. Slurm's own defaults for the daemons.
SLURMCTLD_PORT = 6817
SLURMD_PORT = 6818
SRUN_PORTS = (60001, 60100)


class Addressing(enum.Enum):
    STATIC = "static"
    DHCP = "dhcp"


class Scope(enum.Enum):
    ALL = "all"
    MIGRATION = "migration"


class KeyType(enum.Enum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


class Protocol(enum.Enum):
    TCP = "tcp"
    UDP = "udp"


class Role(enum.Enum):
    COMPUTE = "compute"
    HEAD = "head"


class Hardware(enum.Enum):
    QEMU = "qemu"
    LAB = "lab"


class Attestation(enum.Enum):
    TPM = "tpm"
    APPROVAL = "approval"


class MeasuredBoot(enum.Enum):
    OFF = "off"
    AUDIT = "audit"
    ENFORCE = "enforce"


class BootPath(enum.Enum):
    UEFI = "uefi"
    LEGACY_BIOS = "legacy-bios"


class ImageFormat(enum.Enum):
    ISO = "iso"
    PXE = "pxe"


class Compression(enum.Enum):
    ZSTD = "zstd"
    XZ = "xz"
    LZ4 = "lz4"
    NONE = "none"


@dataclass(frozen=True, kw_only=True)
class ClusterSection:
    name: str = required(
        "cluster name, used in certificate subjects and the tyd handshake",
        "chaos-lab",
        pattern="name",
    )
    domain: str = setting(
        "chaos.lan", "DNS domain; node N gets the name N.<domain>", pattern="domain"
    )


@dataclass(frozen=True, kw_only=True)
class NetworkSection:
    subnet: IPv4Network = required("the cluster's IPv4 subnet (CIDR)", "10.99.0.0/24")
    gateway: IPv4Address | None = setting(
        None, "default gateway on the subnet, or null", example="10.99.0.1"
    )
    addressing: Addressing = setting(
        Addressing.STATIC,
        "static: each node gets its `address`; dhcp: the campus "
        "DHCP server hands out the (reserved) addresses",
    )
    dns: tuple[IPv4Address, ...] = setting((), "DNS servers for the nodes", example=["10.99.0.1"])


@dataclass(frozen=True, kw_only=True)
class ImageSection:
    suite: str = setting("bookworm", "Debian suite of the live image", pattern="name")
    packages: tuple[str, ...] = setting(
        (), "extra Debian packages for the image", example=["htop"], pattern="package"
    )
    hardware: Hardware = setting(
        Hardware.QEMU, "kernel module profile: qemu (virtio) or lab (common desktop NICs)"
    )
    formats: tuple[ImageFormat, ...] = setting(
        (ImageFormat.ISO, ImageFormat.PXE), "artifacts to build"
    )
    compression: Compression = setting(Compression.ZSTD, "initramfs compression")
    console: str = setting("ttyS0,115200", "kernel serial console", pattern="console")
    pxe_stage: bool = setting(
        False,
        "Secure Boot PXE boots a small stage (stage.img) over TFTP that fetches the root "
        "over HTTP and checks its sha256 (in progress; off: the whole root over TFTP)",
    )


class ServeMode(enum.Enum):
    PROXY = "proxy"
    ISOLATED = "isolated"


@dataclass(frozen=True, kw_only=True)
class ServeSection:
    mode: ServeMode = setting(
        ServeMode.PROXY,
        "proxy: answer only PXE requests beside the "
        "campus DHCP server; isolated: be the DHCP server of a segment "
        "of our own (only the MACs in nodes get an address)",
    )
    interface: str = setting(
        "",
        "the build host's interface on the lab segment; serve binds "
        "only to it (required for serve)",
        example="enp3s0",
        pattern="ifname",
    )
    http_port: int = setting(
        8080, "HTTP port for the kernel, initrd and overlays", min=1, max=65535
    )
    address: IPv4Address | None = setting(
        None,
        "the build host's address on network.subnet, "
        "where nodes reach serve and the enrollment "
        "service; null: not set",
        example="10.99.0.2",
    )
    enroll_port: int = setting(8443, "HTTPS port of the enrollment service", min=1, max=65535)
    push_port: int = setting(
        8444,
        "HTTPS port where members push facts about themselves "
        "(tyd joins/leaves, refusals, the morning's leave; Slurm's jobs "
        "from the head) with their node certificate (builder/admin)",
        min=1,
        max=65535,
    )
    admin_address: IPv4Address = setting(
        IPv4Address("127.0.0.1"),
        "where serve's admin page "
        "and /metrics listen: never on network.subnet (the "
        "lab must not reach it); loopback by default",
        example="127.0.0.1",
    )
    admin_port: int = setting(9180, "port of the admin page and /metrics", min=1, max=65535)


@dataclass(frozen=True, kw_only=True)
class Service:
    port: int = required("port number", 22, min=1, max=65535)
    protocol: Protocol = setting(Protocol.TCP, "tcp or udp")
    source: str = setting("cluster", "who may connect: cluster, any or a CIDR", pattern="source")
    name: str = setting("", "a label for the rule and its counter", pattern="label")


@dataclass(frozen=True, kw_only=True)
class NodeDefaults:
    roles: tuple[Role, ...] = setting(
        (Role.COMPUTE,),
        "roles of a node: compute runs jobs "
        "(slurmd); head runs the scheduler (slurmctld) and is "
        "where jobs are submitted; none marked: the first seed "
        "is the head",
        example=["compute"],
    )
    services: tuple[Service, ...] = setting(
        (), "extra firewall services of a node, added to firewall.services", example=[]
    )
    attestation: Attestation = setting(
        Attestation.TPM,
        "how a node proves its machine at boot: tpm (its TPM 2.0 EK, "
        "registered once in security.tpm_registry); approval (a PC without a TPM: every boot "
        "waits until an admin runs `chaos-build enroll approve-boot` with the fingerprint on "
        "its console)",
    )
    boot: BootPath = setting(
        BootPath.UEFI,
        "uefi: the boot is measured and checked (security.measured_boot); "
        "legacy-bios: a PC that can only boot BIOS PXE, which nothing measures: it enrolls "
        "without the measurement check",
    )


@dataclass(frozen=True, kw_only=True)
class Node:
    name: str = required("host name", "node01", pattern="hostname")
    mac: str = required(
        "MAC address of the cluster NIC (selects the overlay at boot)",
        "52:54:00:99:00:11",
        pattern="mac",
    )
    address: IPv4Address = required("the node's address on network.subnet", "10.99.0.11")
    roles: tuple[Role, ...] = setting((Role.COMPUTE,), "roles; default from `defaults`")
    services: tuple[Service, ...] = setting((), "extra firewall services of this node")
    attestation: Attestation = setting(
        Attestation.TPM,
        "tpm or approval (no TPM: every boot waits for an admin); default from `defaults`",
    )
    boot: BootPath = setting(
        BootPath.UEFI,
        "uefi or legacy-bios (unmeasured: no measurement check); default from `defaults`",
    )
    always_on: bool = setting(
        False,
        "a permanent member, not a lab PC: the night does not "
        "apply to it (it boots the cluster at any hour and has no "
        "morning); only for the head, which then needs a state_disk",
    )
    state_disk: str = setting(
        "",
        "the always-on head's persistent disk for the queue and the "
        "homes: a /dev/disk/by-id/ path, or LABEL=chaos-state for a disk "
        "chaos formatted before; chaos formats it only when blank",
        example="/dev/disk/by-id/ata-SAMSUNG_SSD_870_S5XYZ",
        pattern="disk",
    )


@dataclass(frozen=True, kw_only=True)
class Cluster:
    cluster: ClusterSection = required("who the cluster is", {"name": "chaos-lab"})
    network: NetworkSection = required("the cluster network", {"subnet": "10.99.0.0/24"})
    image: ImageSection = setting(ImageSection(), "the live image")
    serve: ServeSection = setting(ServeSection(), "chaos-build serve (PXE for the lab)")
    defaults: NodeDefaults = setting(NodeDefaults(), "what every node inherits")
    nodes: tuple[Node, ...] = required("the machines of the lab", [])
    # each feature's own model section (Feature.model: builder/<feature>/model.py), one
    # instance per feature that declares one, filled by the loader; read with section()
    sections: tuple[Any, ...] = field(default=(), repr=False)

    def section(self, model: type[T]) -> T:
        """The feature model section `model` of this cluster (e.g. NightModel)."""
        for part in self.sections:
            if isinstance(part, model):
                return part
        raise LookupError(f"{model.__name__}: no feature declares this model section")

    def with_section(self, part: Any) -> Cluster:
        """This cluster with one feature's model section replaced."""
        kept = tuple(part if type(p) is type(part) else p for p in self.sections)
        return dataclasses.replace(self, sections=kept)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def seeds(self) -> tuple[Node, ...]:
        names = self.section(TydModel).tyd.seeds
        if names:
            return tuple(self.node(n) for n in names)
        return self.nodes[:1]

    @property
    def heads(self) -> tuple[Node, ...]:
        """Nodes with role head; when none has it, the first seed (as tyd.seeds defaults)."""
        marked = tuple(n for n in self.nodes if Role.HEAD in n.roles)
        return marked or self.seeds[:1]

    @property
    def always_on_head(self) -> Node | None:
        """The permanent head (always_on: true), or None: the head is a lab PC of the night."""
        return next((n for n in self.nodes if n.always_on), None)


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a resolved node setting came from (for `chaos-build show`)."""

    value: Any
    origin: str  # "node", "defaults", "built-in", "cluster"
    line: int | None = None
