"""The trust decision: does this quote and event log show a genuine boot of this build?

Steps, in order: the AK signed the quote; the quote answers this challenge (nonce); it
covers sha256 PCRs 0-9 and 14; the event log replays to the quoted PCRs; then the events
against the reference: Secure Boot on (PCR 7), only this build's files read by GRUB
(PCR 9), only this build's GRUB commands and kernel command line (PCR 8), only this
build's applications started (PCR 4). The GRUB that started says the path (net GRUB: the
node's own TFTP configs; disk GRUB: the ISO's one config and node file), and the files and
commands are checked against that path only. Each deviation is a MeasurementRefused with a code and
a reason that says what differed; the event checks report every deviation they find.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from chaosnode.tpm import QUOTE_PCRS

from .eventlog import (
    EV_EFI_ACTION,
    EV_EFI_BOOT_SERVICES_APPLICATION,
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_IPL,
    EV_SEPARATOR,
    SHA256,
    Event,
    EventLog,
    EventLogError,
    parse_event_log,
)
from .quote import QuoteError, QuoteInfo, parse_attest, pcr_digest, signature_verifies
from .reference import Application, NodeReference, Reference

EFI_GLOBAL_VARIABLE: Final = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c").bytes_le
PCR_SECURE_BOOT, PCR_APPLICATIONS, PCR_GRUB_COMMANDS, PCR_GRUB_FILES = 7, 4, 8, 9
GRUB_CMD, KERNEL_CMDLINE = "grub_cmd: ", "kernel_cmdline: "


@dataclass(frozen=True)
class Evidence:
    """What the node sends after credential activation."""

    attest: bytes  # TPMS_ATTEST as the TPM signed it
    signature: bytes  # TPMT_SIGNATURE, marshalled
    event_log: bytes  # binary_bios_measurements


@dataclass(frozen=True)
class Accepted:
    node: str
    pcrs: tuple[tuple[int, str], ...]  # the replayed sha256 PCRs the quote covers, hex
    events: int


class MeasurementRefused(Exception):
    """The boot is not a genuine boot of this build (or the evidence is not good)."""

    def __init__(self, code: str, reasons: list[str]) -> None:
        super().__init__(f"{code}: {'; '.join(reasons)}")
        self.code, self.reasons = code, tuple(reasons)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class Deviation:
    code: str
    reason: str


def verify_boot(
    evidence: Evidence, ak_public: bytes, nonce: bytes, reference: Reference, node: str
) -> Accepted:
    """Accepted, or MeasurementRefused saying what differed."""
    check_signature(evidence, ak_public)
    info = check_quote(evidence.attest, nonce)
    log = check_replay(evidence.event_log, info.pcr_digest)
    expected = reference.node(node)
    if expected is None:
        raise MeasurementRefused(
            "unknown_node", [f"node {node} is not in the measured-boot reference (build again)"]
        )
    deviations = list(check_events(log, reference, expected))
    if deviations:
        raise MeasurementRefused(deviations[0].code, [d.reason for d in deviations])
    replayed = log.replay(SHA256)
    return Accepted(
        node, tuple((n, replayed.get(n, bytes(32)).hex()) for n in QUOTE_PCRS), len(log.events)
    )


def check_signature(evidence: Evidence, ak_public: bytes) -> None:
    if not signature_verifies(evidence.attest, evidence.signature, ak_public):
        raise MeasurementRefused("bad_signature", ["quote not signed by this AK"])


def check_quote(attest: bytes, nonce: bytes) -> QuoteInfo:
    try:
        info = parse_attest(attest)
    except QuoteError as exc:
        raise MeasurementRefused("malformed", [str(exc)]) from None
    if info.extra_data != nonce:
        raise MeasurementRefused(
            "stale_nonce", ["stale nonce: the quote answers another challenge, not this one"]
        )
    wanted = ((SHA256, frozenset(QUOTE_PCRS)),)
    if info.selection != wanted:
        covered = (
            ", ".join(f"bank {alg:#06x} PCRs {sorted(pcrs)}" for alg, pcrs in info.selection)
            or "nothing"
        )
        raise MeasurementRefused(
            "bad_selection",
            [f"the quote covers {covered}, not sha256 PCRs {', '.join(map(str, QUOTE_PCRS))}"],
        )
    return info


EMPTY_LOG = (
    "the event log is empty: the firmware's measurements never reached the kernel "
    "(the smoke lab sees this with Secure Boot off, where signed GRUB starts the kernel "
    "without handing it the UEFI event log; or a BIOS boot)"
)


def check_replay(event_log: bytes, quoted: bytes) -> EventLog:
    if not event_log:
        raise MeasurementRefused("bad_event_log", [EMPTY_LOG])
    try:
        log = parse_event_log(event_log)
        replayed = log.replay(SHA256)
    except EventLogError as exc:
        raise MeasurementRefused("bad_event_log", [f"the event log is malformed ({exc})"]) from None
    if pcr_digest([replayed.get(n, bytes(32)) for n in QUOTE_PCRS]) != quoted:
        raise MeasurementRefused("no_replay", ["event log does not replay to the quote"])
    return log


@dataclass(frozen=True)
class BootRoute:
    """What one boot path of this build reads and runs, for one node."""

    grub: str  # the reference's application name of the GRUB that reads these files
    configs: dict[str, str]  # sha256 of a GRUB config -> what it is
    overlay: str  # sha256 of the node file GRUB loads
    commands: frozenset[str]


def route_of(log: EventLog, reference: Reference, node: NodeReference) -> BootRoute:
    """The ISO's path when disk GRUB (and not net GRUB) started and the build made an ISO;
    else the net path (whose GRUB must then have started: check_applications)."""
    started = {app.name for e in _in(log, PCR_APPLICATIONS) if (app := _app(e, reference))}
    iso = reference.iso
    if iso is not None and "grub" in started and "grub-net" not in started:
        return BootRoute(
            "grub",
            {iso.grub_config: "the ISO's GRUB config", iso.marker: "the ISO's marker file"},
            iso.overlay or node.overlay,
            frozenset(iso.grub_commands),
        )
    configs = {digest: "a GRUB config" for digest in reference.grub_configs}
    return BootRoute(
        "grub-net",
        configs | {node.grub_config: f"the GRUB config of {node.name}"},
        node.overlay,
        frozenset(node.grub_commands),
    )


def _app(event: Event, reference: Reference) -> Application | None:
    if event.kind != EV_EFI_BOOT_SERVICES_APPLICATION:
        return None
    return reference.application(_sha256(event).hex())


def check_events(log: EventLog, reference: Reference, node: NodeReference) -> Iterator[Deviation]:
    route = route_of(log, reference, node)
    yield from check_secure_boot(log)
    yield from check_grub_files(log, reference, node, route)
    yield from check_grub_commands(log, reference, route)
    yield from check_applications(log, reference, route)


def _in(log: EventLog, pcr: int) -> list[Event]:
    return [e for e in log.events if e.pcr == pcr]


def _sha256(event: Event) -> bytes:
    digest = event.digest(SHA256)
    assert digest is not None  # check_replay needed the bank
    return digest


# -- PCR 7 ---------------------------------------------------------------------------
def variable(event: Event) -> tuple[bytes, str, bytes] | None:
    """(vendor GUID, name, value) of a UEFI_VARIABLE_DATA event, None if malformed."""
    data = event.data
    if len(data) < 32:
        return None
    names, size = struct.unpack_from("<QQ", data, 16)
    end = 32 + 2 * names
    if names > 256 or end + size != len(data):
        return None
    name = data[32:end].decode("utf-16-le", "replace")
    return data[:16], name, data[end:]


def check_secure_boot(log: EventLog) -> Iterator[Deviation]:
    states = []
    for event in _in(log, PCR_SECURE_BOOT):
        var = variable(event) if event.kind == EV_EFI_VARIABLE_DRIVER_CONFIG else None
        if var is None or var[:2] != (EFI_GLOBAL_VARIABLE, "SecureBoot"):
            continue
        if hashlib.sha256(event.data).digest() != _sha256(event):
            yield Deviation(
                "secure_boot_off", "PCR 7: the SecureBoot event's data does not match its digest"
            )
            return
        states.append(var[2])
    if not states:
        yield Deviation(
            "secure_boot_off", "Secure Boot is off (PCR 7 holds no SecureBoot variable)"
        )
    elif any(state != b"\x01" for state in states):
        yield Deviation("secure_boot_off", "Secure Boot is off")


# -- PCR 9 ---------------------------------------------------------------------------
def check_grub_files(
    log: EventLog, reference: Reference, node: NodeReference, route: BootRoute
) -> Iterator[Deviation]:
    wanted = {
        reference.kernel: "the kernel",
        reference.initrd: "the base initrd",
        route.overlay: f"the overlay of {node.name}",
    } | route.configs
    seen = set()
    for event in _in(log, PCR_GRUB_FILES):
        digest, path = _sha256(event).hex(), event.text()
        if event.kind != EV_IPL:
            yield Deviation(
                "unknown_file",
                f"PCR 9: an event of type {event.kind:#x} this build does not make ({path[:80]!r})",
            )
        elif digest in wanted:
            seen.add(digest)
        else:
            yield Deviation(
                "unknown_file",
                f"PCR 9: {_kind_of(path, reference)} this build "
                f"did not make for {node.name} ({path[:120]!r}, sha256 {digest})",
            )
    for digest in (reference.kernel, reference.initrd, route.overlay):
        if digest not in seen:
            yield Deviation(
                "missing_file", f"PCR 9: {wanted[digest]} (sha256 {digest}) was not loaded"
            )


def _kind_of(path: str, reference: Reference) -> str:
    if path.endswith(".cfg"):
        return "a GRUB config"
    if path.endswith(".id"):
        return "a marker file (the ISO's)"
    if path.rsplit("/", 1)[-1] == reference.kernel_name:
        return "a kernel"
    return "an initrd"


# -- PCR 8 ---------------------------------------------------------------------------
def check_grub_commands(
    log: EventLog, reference: Reference, route: BootRoute
) -> Iterator[Deviation]:
    prelude = [
        re.compile(re.escape(p).replace(re.escape("{prefix}"), reference.prefix_pattern) + r"\Z")
        for p in reference.grub_prelude
    ]
    commands = route.commands
    cmdlines = 0
    for event in _in(log, PCR_GRUB_COMMANDS):
        text = event.text()
        prefix = next((p for p in (GRUB_CMD, KERNEL_CMDLINE) if text.startswith(p)), None)
        if event.kind != EV_IPL or prefix is None:
            yield Deviation(
                "grub_command", f"PCR 8: an event this build does not make ({text[:120]!r})"
            )
            continue
        body = text[len(prefix) :]
        if hashlib.sha256(body.encode()).digest() != _sha256(event):
            yield Deviation(
                "grub_command", f"PCR 8: the text of {text[:120]!r} does not match its digest"
            )
        elif prefix == KERNEL_CMDLINE:
            cmdlines += 1
            yield from _check_cmdline(body, reference)
        elif body not in commands and not any(p.match(body) for p in prelude):
            yield Deviation(
                "grub_command",
                f"PCR 8: GRUB ran a command this build's config does not have: {body[:160]!r}",
            )
    if cmdlines != 1:
        yield Deviation(
            "command_line", f"PCR 8: {cmdlines} kernel command lines were measured, not one"
        )


def _check_cmdline(measured: str, reference: Reference) -> Iterator[Deviation]:
    path, _, args = measured.partition(" ")
    if path.rsplit("/", 1)[-1] != reference.kernel_name or args != reference.kernel_args:
        yield Deviation(
            "command_line",
            f"kernel command line differs: measured "
            f"{measured[:200]!r}, this build boots "
            f"'.../{reference.kernel_name} {reference.kernel_args}'",
        )


# -- PCR 4 ---------------------------------------------------------------------------
def check_applications(
    log: EventLog, reference: Reference, route: BootRoute
) -> Iterator[Deviation]:
    started = set()
    for event in _in(log, PCR_APPLICATIONS):
        digest = _sha256(event).hex()
        if event.kind in (EV_EFI_ACTION, EV_SEPARATOR):
            if hashlib.sha256(event.data).hexdigest() != digest:  # a start logged as text
                yield Deviation(
                    "unknown_application",
                    f"PCR 4: an event's text "
                    f"({event.text()[:80]!r}) does not match its digest {digest}",
                )
            continue
        app = reference.application(digest)
        if event.kind != EV_EFI_BOOT_SERVICES_APPLICATION or app is None:
            yield Deviation(
                "unknown_application",
                f"PCR 4: an application this build did not make (Authenticode sha256 {digest})",
            )
        else:
            started.add(app.name)
    for name in ("shim", "kernel"):
        if name not in started:
            yield Deviation("unknown_application", f"PCR 4: this build's {name} was not started")
    if route.grub not in started:
        yield Deviation("unknown_application", "PCR 4: this build's GRUB was not started")
