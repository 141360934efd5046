"""The reference: what a genuine boot of this build measures, computed from the build's
boot files and written as public JSON beside the build output (no secrets: digests, the
kernel command line, GRUB's commands).

PCR 4: Authenticode sha256 of shim, GRUB and the kernel (firmware and shim measure them).
PCR 7: Secure Boot on (the platform's keys differ from PC to PC, so no golden value).
PCR 8: GRUB's commands and the kernel command line: a policy, not one value, because GRUB's
own prelude names the device it came from (the TFTP server's address on the net path).
PCR 9: sha256 of each file signed GRUB reads: its configs, the kernel, each initrd.

Two boot paths: the net path (signed net GRUB over TFTP, a config per node) and, when the
build makes an ISO, the ISO's UEFI path (signed disk GRUB, one config for every PC, the
ISO's node file). Which GRUB started (PCR 4) says which path a log must match.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from .authenticode import authenticode_file

FORMAT: Final = "chaos-measured-reference/1"
REFERENCE_FILE: Final = "measured-reference.json"
SHIM_SIGNED: Final = Path("/usr/lib/shim/shimx64.efi.signed")  # shim-signed
GRUB_SIGNED: Final = Path("/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")  # disk
GRUB_NET_SIGNED: Final = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
# what signed GRUB's built-in memdisk config runs before ours ({prefix}: where it came from)
GRUB_PRELUDE: Final = (
    "[ -z {prefix} -o ! -e {prefix} ]",
    "[ -e {prefix}/x86_64-efi/grub.cfg ]",
    "[ -e {prefix}/grub.cfg ]",
    "source {prefix}/grub.cfg",
)
GRUB_DIRS: Final = r"(?:/grub|/EFI/debian|/EFI/BOOT|/boot/grub)"
GRUB_DISKS: Final = r"hd\d+(?:,(?:gpt|msdos)\d+)?|cd\d+"


class ReferenceError(ValueError):
    """A reference file that cannot be read or is not one."""


@dataclass(frozen=True)
class BootFiles:
    """The binaries and files a node boots: signed shim and GRUB from the host's packages,
    the build's kernel and base initrd."""

    kernel: Path
    initrd: Path
    shim: Path = SHIM_SIGNED
    grub: Path = GRUB_SIGNED
    grub_net: Path = GRUB_NET_SIGNED


@dataclass(frozen=True)
class NodeBoot:
    """What one node boots beyond the shared files."""

    name: str
    mac: str
    overlay: bytes  # the per-node cpio
    grub_config: str  # its GRUB config (grub/mac-<mac>.cfg)


@dataclass(frozen=True)
class IsoBoot:
    """What the ISO's UEFI path reads beyond the shared files."""

    grub_config: str  # EFI/debian/grub.cfg
    bundle: bytes | None  # the ISO's node file when it is the bundle of every node
    marker: bytes  # the file GRUB's `search --file` opens (and measures) to find the ISO


@dataclass(frozen=True)
class Application:
    name: str
    authenticode: str  # sha256 hex, as PCR 4 logs it


@dataclass(frozen=True)
class NodeReference:
    name: str
    mac: str
    overlay: str  # sha256 of nodes/<name>.cpio
    grub_config: str  # sha256 of its GRUB config
    grub_commands: tuple[str, ...]  # the commands of the configs, as GRUB logs them


@dataclass(frozen=True)
class IsoReference:
    """The ISO's UEFI path: signed disk GRUB reads one config and the ISO's node file."""

    grub_config: str  # sha256 of EFI/debian/grub.cfg
    grub_commands: tuple[str, ...]  # its commands, as GRUB logs them (no per-host string)
    overlay: str | None  # sha256 of the ISO's node bundle; None: a --node ISO (its own)
    marker: str  # sha256 of the marker file (PCR 9: GRUB measures what `search` opens)


@dataclass(frozen=True)
class Reference:
    applications: tuple[Application, ...]
    kernel: str  # sha256 of the kernel file
    initrd: str  # sha256 of the base initrd
    grub_configs: tuple[str, ...]  # sha256 of the shared GRUB configs
    kernel_name: str  # the measured command line starts with a path ending so
    kernel_args: str
    grub_prelude: tuple[str, ...]
    prefix_pattern: str  # what {prefix} in the prelude may be
    nodes: tuple[NodeReference, ...]
    secure_boot: bool = True
    iso: IsoReference | None = None  # None: the build made no ISO
    format: str = FORMAT

    def node(self, name: str) -> NodeReference | None:
        return next((n for n in self.nodes if n.name == name), None)

    def application(self, digest: str) -> Application | None:
        return next((a for a in self.applications if a.authenticode == digest), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def grub_commands(config: str, mac: str) -> tuple[str, ...]:
    """The commands of a GRUB config as GRUB logs them into PCR 8 (after expansion)."""
    lines = (line.strip() for line in config.splitlines())
    return tuple(
        line.replace("${net_default_mac}", mac.lower())
        for line in lines
        if line and not line.startswith("#")
    )


def prefix_pattern(server: ipaddress.IPv4Address | None) -> str:
    """Where signed GRUB may have come from: the build's TFTP server, or a local disk."""
    tftp = re.escape(f"tftp,{server}") if server is not None else r"tftp,\d+(?:\.\d+){3}"
    return rf"\((?:{tftp}|{GRUB_DISKS})\){GRUB_DIRS}"


def compute_reference(
    files: BootFiles,
    kernel_name: str,
    kernel_args: str,
    shared_configs: Sequence[str],
    nodes: Sequence[NodeBoot],
    server: ipaddress.IPv4Address | None,
    iso: IsoBoot | None = None,
) -> Reference:
    """The reference for these boot files (reads them; writes nothing)."""
    applications = tuple(
        Application(name, authenticode_file(path))
        for name, path in (
            ("shim", files.shim),
            ("grub", files.grub),
            ("grub-net", files.grub_net),
            ("kernel", files.kernel),
        )
    )
    return Reference(
        applications=applications,
        kernel=sha256_hex(files.kernel.read_bytes()),
        initrd=sha256_hex(files.initrd.read_bytes()),
        grub_configs=tuple(sha256_hex(cfg.encode()) for cfg in shared_configs),
        kernel_name=kernel_name,
        kernel_args=kernel_args,
        grub_prelude=GRUB_PRELUDE,
        prefix_pattern=prefix_pattern(server),
        nodes=tuple(
            NodeReference(
                node.name,
                node.mac.lower(),
                sha256_hex(node.overlay),
                sha256_hex(node.grub_config.encode()),
                tuple(
                    dict.fromkeys(
                        [c for cfg in shared_configs for c in grub_commands(cfg, node.mac)]
                        + list(grub_commands(node.grub_config, node.mac))
                    )
                ),
            )
            for node in nodes
        ),
        iso=None if iso is None else iso_reference(iso),
    )


def iso_reference(iso: IsoBoot) -> IsoReference:
    return IsoReference(
        grub_config=sha256_hex(iso.grub_config.encode()),
        grub_commands=grub_commands(iso.grub_config, ""),
        overlay=None if iso.bundle is None else sha256_hex(iso.bundle),
        marker=sha256_hex(iso.marker),
    )


def write_reference(reference: Reference, path: Path) -> None:
    """Atomically: a temp file beside `path`, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(reference.to_json())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_reference(path: Path) -> Reference:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReferenceError(f"{path}: cannot read the measured-boot reference ({exc})") from None
    try:
        return reference_from(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ReferenceError(f"{path}: not a {FORMAT} file ({exc!r})") from None


def reference_from(raw: Any) -> Reference:
    if raw["format"] != FORMAT:
        raise ValueError(f"format {raw['format']!r}")
    return Reference(
        applications=tuple(
            Application(_str(a["name"]), _str(a["authenticode"])) for a in raw["applications"]
        ),
        kernel=_str(raw["kernel"]),
        initrd=_str(raw["initrd"]),
        grub_configs=_strs(raw["grub_configs"]),
        kernel_name=_str(raw["kernel_name"]),
        kernel_args=_str(raw["kernel_args"]),
        grub_prelude=_strs(raw["grub_prelude"]),
        prefix_pattern=_str(raw["prefix_pattern"]),
        nodes=tuple(
            NodeReference(
                _str(n["name"]),
                _str(n["mac"]),
                _str(n["overlay"]),
                _str(n["grub_config"]),
                _strs(n["grub_commands"]),
            )
            for n in raw["nodes"]
        ),
        secure_boot=bool(raw["secure_boot"]),
        iso=None if raw.get("iso") is None else iso_from(raw["iso"]),
    )


def iso_from(raw: Any) -> IsoReference:
    overlay = raw["overlay"]
    return IsoReference(
        grub_config=_str(raw["grub_config"]),
        grub_commands=_strs(raw["grub_commands"]),
        overlay=None if overlay is None else _str(overlay),
        marker=_str(raw["marker"]),
    )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _strs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"{value!r} is not a list")
    return tuple(_str(v) for v in value)
