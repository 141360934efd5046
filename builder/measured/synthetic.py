"""A synthetic genuine boot of a reference, event by event, shaped like the net path the
probe logged under OVMF Secure Boot (probes/measured-boot/evidence/run-net.analysis.txt):
firmware, shim, signed grubnetx64 over TFTP, the kernel (PCR 4 logs it twice), each
initrd; or the ISO's path (Boot(iso=True)): signed disk GRUB from the ISO's EFI image, its
one config, the ISO's node file. For host-tier tests and benches: extend a software TPM
exactly as the log says, or sign a quote in software.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from tpm2_pytss.constants import ESYS_TR
from tpm2_pytss.types import TPML_DIGEST_VALUES, TPMT_HA, TPMU_HA

from chaosnode.tpm import QUOTE_PCRS

from .eventlog import (
    DIGEST_SIZES,
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_PLATFORM_FIRMWARE_BLOB,
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_VARIABLE_BOOT,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_IPL,
    EV_NO_ACTION,
    EV_S_CRTM_VERSION,
    EV_SEPARATOR,
    HASH_NAMES,
    SHA256,
    Event,
    EventLog,
    encode_event_log,
    measured,
)
from .quote import TPM_ALG_ECDSA, TPM_ALG_SHA256, TPM_GENERATED, TPM_ST_ATTEST_QUOTE, pcr_digest
from .reference import NodeReference, Reference
from .verify import EFI_GLOBAL_VARIABLE

IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f").bytes_le
SEPARATOR = b"\0\0\0\0"


@dataclass(frozen=True)
class Boot:
    """What one boot does; the defaults are a genuine boot, each field one deviation."""

    secure_boot: bool = True
    kernel: str | None = None  # sha256 of the kernel file GRUB read
    kernel_app: str | None = None  # its Authenticode sha256
    initrds: tuple[tuple[str, str], ...] | None = None  # (path, sha256) GRUB read
    cmdline: str | None = None  # the kernel command line's arguments
    extra_applications: tuple[str, ...] = ()  # Authenticode sha256 started before shim
    extra_commands: tuple[str, ...] = ()  # GRUB commands typed at its prompt
    iso: bool = False  # the ISO's UEFI path (disk GRUB) instead of the net path
    banks: tuple[int, ...] = field(default=(SHA256,))


def variable_data(guid: bytes, name: str, value: bytes) -> bytes:
    """UEFI_VARIABLE_DATA, as the firmware logs (and hashes) it for PCR 7."""
    encoded = name.encode("utf-16-le")
    return guid + struct.pack("<QQ", len(name), len(value)) + encoded + value


def _ipl(pcr: int, text: str, digest: bytes | None, banks: Sequence[int]) -> Event:
    data = text.encode() + b"\0"
    if digest is None:  # PCR 8: the command's text without its "grub_cmd: " prefix
        return measured(pcr, EV_IPL, data, text.split(": ", 1)[1].encode(), banks)
    return _with_digest(pcr, EV_IPL, data, digest, banks)


def _with_digest(pcr: int, kind: int, data: bytes, digest: bytes, banks: Sequence[int]) -> Event:
    """An event whose sha256 digest is given (a file's hash); other banks get a stand-in."""
    return Event(
        pcr,
        kind,
        tuple(
            (alg, digest if alg == SHA256 else hashlib.new(HASH_NAMES[alg], digest).digest())
            for alg in banks
        ),
        data,
    )


def firmware_events(boot: Boot) -> list[Event]:
    b = boot.banks
    events = [
        Event(
            0,
            EV_NO_ACTION,
            tuple((alg, bytes(DIGEST_SIZES[alg])) for alg in b),
            b"StartupLocality\0\0",
        ),
        measured(0, EV_S_CRTM_VERSION, "chaos synthetic firmware".encode("utf-16-le"), banks=b),
        measured(
            0,
            EV_EFI_PLATFORM_FIRMWARE_BLOB,
            struct.pack("<QQ", 0x820000, 1 << 20),
            b"firmware volume",
            b,
        ),
    ]
    state = b"\x01" if boot.secure_boot else b"\x00"
    for name, value in (("SecureBoot", state), ("PK", b"pk"), ("KEK", b"kek")):
        events.append(
            measured(
                7,
                EV_EFI_VARIABLE_DRIVER_CONFIG,
                variable_data(EFI_GLOBAL_VARIABLE, name, value),
                banks=b,
            )
        )
    for name in ("db", "dbx"):
        events.append(
            measured(
                7,
                EV_EFI_VARIABLE_DRIVER_CONFIG,
                variable_data(IMAGE_SECURITY_DATABASE, name, name.encode()),
                banks=b,
            )
        )
    events.append(measured(7, EV_SEPARATOR, SEPARATOR, banks=b))
    events.append(
        measured(
            1,
            EV_EFI_VARIABLE_BOOT,
            variable_data(EFI_GLOBAL_VARIABLE, "BootOrder", b"\0\0"),
            banks=b,
        )
    )
    events.append(measured(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option", banks=b))
    events += [measured(pcr, EV_SEPARATOR, SEPARATOR, banks=b) for pcr in (0, 1, 2, 3, 4, 5, 6)]
    return events


def boot_events(
    reference: Reference, node: NodeReference, server: ipaddress.IPv4Address, boot: Boot = Boot()
) -> list[Event]:
    """The events of one boot of `node` from `server` over TFTP."""
    b = boot.banks
    app = {a.name: bytes.fromhex(a.authenticode) for a in reference.applications}
    kernel_app = bytes.fromhex(boot.kernel_app) if boot.kernel_app else app["kernel"]
    kernel = bytes.fromhex(boot.kernel or reference.kernel)
    route = _route(reference, node, server, boot)
    initrds = boot.initrds or route.initrds
    args = reference.kernel_args if boot.cmdline is None else boot.cmdline
    prefix = route.prefix
    events = firmware_events(boot)
    events += [
        _with_digest(4, EV_EFI_BOOT_SERVICES_APPLICATION, b"stranger", bytes.fromhex(d), b)
        for d in boot.extra_applications
    ]
    events += [
        measured(
            7,
            EV_EFI_VARIABLE_AUTHORITY,
            variable_data(IMAGE_SECURITY_DATABASE, "db", b"MS UEFI CA"),
            banks=b,
        ),
        _with_digest(4, EV_EFI_BOOT_SERVICES_APPLICATION, b"shimx64.efi", app["shim"], b),
        measured(14, EV_IPL, b"MokList\0", b"moklist", b),
        measured(
            7,
            EV_EFI_VARIABLE_AUTHORITY,
            variable_data(
                uuid.UUID("605dab50-e046-4300-abb6-3dd810dd8b23").bytes_le,
                "SbatLevel",
                b"sbat,1,2025021800\nshim,4\ngrub,5\n",
            ),
            banks=b,
        ),
        _with_digest(4, EV_EFI_BOOT_SERVICES_APPLICATION, b"grubx64.efi", app[route.grub], b),
        _ipl(8, f"grub_cmd: [ -e {prefix}/x86_64-efi/grub.cfg ]", None, b),
        _ipl(8, f"grub_cmd: source {prefix}/grub.cfg", None, b),
        _ipl(9, f"{prefix}/grub.cfg", bytes.fromhex(route.config), b),
    ]
    commands = [c for c in route.commands if not c.startswith(("echo", "sleep", "exit"))]
    for command in commands:
        if command.startswith("search ") and reference.iso is not None:
            events.append(_ipl(8, f"grub_cmd: {command}", None, b))
            marker = f"(cd0){command.rsplit(' ', 1)[1]}"  # `search` opens it: PCR 9
            events.append(_ipl(9, marker, bytes.fromhex(reference.iso.marker), b))
            continue
        if command.startswith("linux "):
            _, path, *_ = command.split(" ")
            events.append(_ipl(8, f"grub_cmd: linux {path} {args}".rstrip(), None, b))
            events.append(_ipl(9, path, kernel, b))
            events += [_with_digest(4, EV_EFI_BOOT_SERVICES_APPLICATION, b"", kernel_app, b)] * 2
            events.append(_ipl(8, f"kernel_cmdline: {path} {args}".rstrip(), None, b))
        elif command.startswith("initrd "):
            paths = " ".join(p for p, _ in initrds)
            events.append(_ipl(8, f"grub_cmd: initrd {paths}", None, b))
            events += [_ipl(9, p, bytes.fromhex(d), b) for p, d in initrds]
        else:
            if command.startswith("boot"):
                events += [_ipl(8, f"grub_cmd: {c}", None, b) for c in boot.extra_commands]
            events.append(_ipl(8, f"grub_cmd: {command}", None, b))
            if command.startswith("configfile "):
                events.append(_ipl(9, command.split(" ", 1)[1], bytes.fromhex(node.grub_config), b))
    events += [
        measured(5, EV_EFI_ACTION, b"Exit Boot Services Invocation", banks=b),
        measured(5, EV_EFI_ACTION, b"Exit Boot Services Returned with Success", banks=b),
    ]
    return events


@dataclass(frozen=True)
class _Route:
    grub: str  # the reference's name of the GRUB application
    prefix: str  # GRUB's $prefix
    config: str  # sha256 of the config it sources
    commands: tuple[str, ...]
    initrds: tuple[tuple[str, str], ...]


def _route(
    reference: Reference, node: NodeReference, server: ipaddress.IPv4Address, boot: Boot
) -> _Route:
    if not boot.iso:
        return _Route(
            "grub-net",
            f"(tftp,{server})/grub",
            reference.grub_configs[0],
            node.grub_commands,
            (
                ("(tftp)/initrd.img", reference.initrd),
                (f"(tftp)/nodes/{node.name}.cpio", node.overlay),
            ),
        )
    iso = reference.iso
    if iso is None:
        raise ValueError("Boot(iso=True) of a reference without the ISO's path")
    return _Route(
        "grub",
        "(cd0)/EFI/debian",
        iso.grub_config,
        iso.grub_commands,
        (("/boot/initrd.img", reference.initrd), ("/boot/nodes.cpio", iso.overlay or node.overlay)),
    )


def log_bytes(events: Iterable[Event], banks: Sequence[int] = (SHA256,)) -> bytes:
    return encode_event_log(banks, events)


# -- a TPM that follows the log -------------------------------------------------------
def extend_tpm(esapi: Any, events: Iterable[Event]) -> None:
    """PCR_Extend each event's digests into a (software) TPM, as firmware, shim and GRUB
    would have. Volatile state only: PCRs reset with the TPM."""
    for event in events:
        if event.kind == EV_NO_ACTION:
            continue
        digests = TPML_DIGEST_VALUES(
            [
                TPMT_HA(hashAlg=alg, digest=TPMU_HA(**{HASH_NAMES[alg]: d}))
                for alg, d in event.digests
            ]
        )
        esapi.pcr_extend(ESYS_TR.PCR0 + event.pcr, digests)


# -- a quote signed in software (benches: many nodes without many TPMs) ------------------
def soft_quote(
    key: ec.EllipticCurvePrivateKey, nonce: bytes, events: Iterable[Event]
) -> tuple[bytes, bytes]:
    """(TPMS_ATTEST, TPMT_SIGNATURE) a TPM holding `key` as its AK would give for PCRs
    extended by `events`."""
    pcrs = EventLog(((SHA256, 32),), tuple(events)).replay(SHA256)
    bitmap = bytearray(3)
    for n in QUOTE_PCRS:
        bitmap[n // 8] |= 1 << n % 8
    digest = pcr_digest([pcrs.get(n, bytes(32)) for n in QUOTE_PCRS])
    attest = (
        struct.pack(">IH", TPM_GENERATED, TPM_ST_ATTEST_QUOTE)
        + struct.pack(">H", 34)
        + bytes(34)
        + struct.pack(">H", len(nonce))
        + nonce
        + struct.pack(">QIIB", 0, 1, 0, 1)
        + bytes(8)
        + struct.pack(">IHB", 1, TPM_ALG_SHA256, 3)
        + bytes(bitmap)
        + struct.pack(">H", len(digest))
        + digest
    )
    r, s = decode_dss_signature(key.sign(attest, ec.ECDSA(hashes.SHA256())))
    signature = struct.pack(">HH", TPM_ALG_ECDSA, TPM_ALG_SHA256) + b"".join(
        struct.pack(">H", 32) + v.to_bytes(32, "big") for v in (r, s)
    )
    return attest, signature
