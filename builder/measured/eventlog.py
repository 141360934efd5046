"""The UEFI event log in the TCG PC Client crypto-agile format (what Linux exposes as
/sys/kernel/security/tpm0/binary_bios_measurements): parse, replay, encode.

Parsing is total: any bytes give an EventLog or an EventLogError, never another exception.
The first event is in the SHA-1 format and carries the "Spec ID Event03" header that names
the digest banks; every later event carries one digest per bank.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from .reader import Reader

SHA1: Final = 0x0004
SHA256: Final = 0x000B
DIGEST_SIZES: Final = {SHA1: 20, SHA256: 32, 0x000C: 48, 0x000D: 64, 0x0012: 32}
HASH_NAMES: Final = {
    SHA1: "sha1",
    SHA256: "sha256",
    0x000C: "sha384",
    0x000D: "sha512",
    0x0012: "sm3_256",
}

EV_NO_ACTION: Final = 0x3
EV_SEPARATOR: Final = 0x4
EV_S_CRTM_VERSION: Final = 0x8
EV_IPL: Final = 0xD
EV_EFI_VARIABLE_DRIVER_CONFIG: Final = 0x80000001
EV_EFI_VARIABLE_BOOT: Final = 0x80000002
EV_EFI_BOOT_SERVICES_APPLICATION: Final = 0x80000003
EV_EFI_ACTION: Final = 0x80000007
EV_EFI_PLATFORM_FIRMWARE_BLOB: Final = 0x80000008
EV_EFI_VARIABLE_AUTHORITY: Final = 0x800000E0

SPEC_ID: Final = b"Spec ID Event03\0"
STARTUP_LOCALITY: Final = b"StartupLocality\0"
MAX_LOG_BYTES: Final = 4 << 20  # real logs are 20-200 KB
MAX_EVENTS: Final = 20000
MAX_PCR: Final = 23


class EventLogError(ValueError):
    """The bytes are not a well-formed crypto-agile event log."""


@dataclass(frozen=True)
class Event:
    pcr: int
    kind: int
    digests: tuple[tuple[int, bytes], ...]  # (hash algorithm, digest) per bank
    data: bytes

    def digest(self, algorithm: int = SHA256) -> bytes | None:
        return next((d for alg, d in self.digests if alg == algorithm), None)

    def text(self) -> str:
        """The event data as text (GRUB's strings end with a NUL)."""
        return self.data.rstrip(b"\0").decode("utf-8", "replace")


@dataclass(frozen=True)
class EventLog:
    banks: tuple[tuple[int, int], ...]  # (hash algorithm, digest size) from the Spec ID event
    events: tuple[Event, ...]

    def replay(self, algorithm: int = SHA256) -> dict[int, bytes]:
        """The PCR values this log extends to, for one bank (PCRs without events absent)."""
        size = dict(self.banks).get(algorithm)
        if size is None:
            raise EventLogError(f"the log has no {HASH_NAMES.get(algorithm, algorithm)} bank")
        pcrs: dict[int, bytes] = {}
        for event in self.events:
            if event.kind == EV_NO_ACTION:
                if event.data.startswith(STARTUP_LOCALITY) and len(event.data) == 17:
                    pcrs[0] = bytes(size - 1) + event.data[16:17]
                continue
            digest = event.digest(algorithm)
            assert digest is not None  # parse() requires every bank in every event
            current = pcrs.get(event.pcr, bytes(size))
            pcrs[event.pcr] = hashlib.new(HASH_NAMES[algorithm], current + digest).digest()
        return pcrs


def _reader(data: bytes, what: str) -> Reader:
    return Reader(data, what, "<", EventLogError)


def parse_event_log(data: bytes) -> EventLog:
    """The event log in `data`; EventLogError for anything else."""
    if len(data) > MAX_LOG_BYTES:
        raise EventLogError(f"the log is {len(data)} bytes; the limit is {MAX_LOG_BYTES}")
    reader = _reader(data, "the log")
    banks = _spec_id_event(reader)
    sizes = dict(banks)
    events: list[Event] = []
    while reader.left:
        if len(events) >= MAX_EVENTS:
            raise EventLogError(f"more than {MAX_EVENTS} events")
        events.append(_event(reader, sizes, len(events) + 1))
    return EventLog(banks, tuple(events))


def _spec_id_event(reader: Reader) -> tuple[tuple[int, int], ...]:
    reader.unpack("I", "the header's PCR index")
    if reader.unpack("I", "the header's event type") != EV_NO_ACTION:
        raise EventLogError("the first event is not the Spec ID event (EV_NO_ACTION)")
    reader.take(20, "the header's SHA-1 digest")
    body = _reader(
        reader.take(reader.unpack("I", "the header's size"), "the Spec ID event"),
        "the Spec ID event",
    )
    if body.take(16, "the Spec ID signature") != SPEC_ID:
        raise EventLogError("not a crypto-agile log (no 'Spec ID Event03' header)")
    body.take(8, "the Spec ID versions")  # platform class, spec version, errata, uintn size
    count = body.unpack("I", "the number of banks")
    if not 1 <= count <= len(DIGEST_SIZES):
        raise EventLogError(f"the header names {count} digest banks")
    banks: list[tuple[int, int]] = []
    for _ in range(count):
        algorithm = body.unpack("H", "a bank's algorithm")
        size = body.unpack("H", "a bank's digest size")
        if DIGEST_SIZES.get(algorithm) != size:
            raise EventLogError(f"unknown digest bank {algorithm:#06x} of {size} bytes")
        if algorithm in dict(banks):
            raise EventLogError(f"digest bank {algorithm:#06x} named twice")
        banks.append((algorithm, size))
    vendor = body.unpack("B", "the vendor info size")
    body.take(vendor, "the vendor info")
    if body.left:
        raise EventLogError(f"{body.left} bytes after the Spec ID event's fields")
    return tuple(banks)


def _event(reader: Reader, sizes: Mapping[int, int], number: int) -> Event:
    where = f"event {number}"
    pcr = reader.unpack("I", where)
    kind = reader.unpack("I", where)
    if pcr > MAX_PCR:
        raise EventLogError(f"{where} extends PCR {pcr}")
    count = reader.unpack("I", where)
    if count != len(sizes):
        raise EventLogError(f"{where} has {count} digests; the log has {len(sizes)} banks")
    digests: list[tuple[int, bytes]] = []
    for _ in range(count):
        algorithm = reader.unpack("H", where)
        size = sizes.get(algorithm)
        if size is None or algorithm in dict(digests):
            raise EventLogError(
                f"{where} has a digest of bank {algorithm:#06x} that is not "
                "in the header or is there twice"
            )
        digests.append((algorithm, reader.take(size, where)))
    data = reader.take(reader.unpack("I", where), f"{where}'s data")
    return Event(pcr, kind, tuple(digests), data)


# -- encoding (synthetic logs for tests and benches) ---------------------------------
def encode_event_log(banks: Iterable[int], events: Iterable[Event]) -> bytes:
    """The log bytes for these banks and events (each event carries every bank)."""
    banks = tuple(banks)
    spec = SPEC_ID + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(banks))
    spec += b"".join(struct.pack("<HH", alg, DIGEST_SIZES[alg]) for alg in banks) + b"\0"
    out = [struct.pack("<II", 0, EV_NO_ACTION), bytes(20), struct.pack("<I", len(spec)), spec]
    for event in events:
        out.append(struct.pack("<III", event.pcr, event.kind, len(event.digests)))
        out += [struct.pack("<H", alg) + digest for alg, digest in event.digests]
        out += [struct.pack("<I", len(event.data)), event.data]
    return b"".join(out)


def measured(
    pcr: int, kind: int, data: bytes, payload: bytes | None = None, banks: Iterable[int] = (SHA256,)
) -> Event:
    """An event whose digests are the hash of `payload` (default: of `data`)."""
    hashed = data if payload is None else payload
    return Event(
        pcr,
        kind,
        tuple((alg, hashlib.new(HASH_NAMES[alg], hashed).digest()) for alg in banks),
        data,
    )
