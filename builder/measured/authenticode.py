"""The Authenticode (PE/COFF) sha256 digest of an EFI binary: what shim and the firmware
extend into PCR 4 for each application they start.

The image hash covers the whole file except the optional header's CheckSum field, the
certificate-table entry of the data directory, and the certificate table itself (the
signatures), so a signed and an unsigned copy of one binary have the same digest.
Sections are hashed in file order; bytes after the last section and before the
certificate table are hashed too (Microsoft's "Windows Authenticode PE Signature Format").
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Final

PE32: Final = 0x10B
PE32_PLUS: Final = 0x20B
CERT_TABLE_INDEX: Final = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY
SECTION_HEADER: Final = 40


class NotAPeImage(ValueError):
    """The bytes are not a PE/COFF image whose Authenticode digest can be computed."""


def _u16(data: bytes, at: int) -> int:
    if at < 0 or at + 2 > len(data):
        raise NotAPeImage(f"truncated at offset {at}")
    return int(struct.unpack_from("<H", data, at)[0])


def _u32(data: bytes, at: int) -> int:
    if at < 0 or at + 4 > len(data):
        raise NotAPeImage(f"truncated at offset {at}")
    return int(struct.unpack_from("<I", data, at)[0])


def authenticode_sha256(data: bytes) -> bytes:
    """The Authenticode sha256 of a PE image; NotAPeImage if it is none."""
    if data[:2] != b"MZ":
        raise NotAPeImage("no MZ header")
    pe = _u32(data, 0x3C)
    if data[pe : pe + 4] != b"PE\0\0":
        raise NotAPeImage("no PE signature")
    sections = _u16(data, pe + 6)
    optional_size = _u16(data, pe + 20)
    optional = pe + 24
    magic = _u16(data, optional)
    if magic not in (PE32, PE32_PLUS):
        raise NotAPeImage(f"unknown optional header magic {magic:#x}")
    checksum = optional + 64
    directories = optional + (112 if magic == PE32_PLUS else 96)
    directory_count = _u32(data, directories - 4)
    if directory_count <= CERT_TABLE_INDEX:
        raise NotAPeImage("no certificate table entry in the data directory")
    cert_entry = directories + 8 * CERT_TABLE_INDEX
    headers_end = _u32(data, optional + 60)  # SizeOfHeaders
    if not cert_entry + 8 <= headers_end <= len(data):
        raise NotAPeImage("SizeOfHeaders is out of range")
    cert_offset, cert_size = _u32(data, cert_entry), _u32(data, cert_entry + 4)

    digest = hashlib.sha256()
    digest.update(data[:checksum])
    digest.update(data[checksum + 4 : cert_entry])
    digest.update(data[cert_entry + 8 : headers_end])
    hashed = headers_end
    for start, size in _sections(data, optional + optional_size, sections):
        if start + size > len(data):
            raise NotAPeImage("a section lies beyond the end of the file")
        digest.update(data[start : start + size])
        hashed = max(hashed, start + size)
    end = len(data)
    if cert_size:
        if cert_offset < hashed or cert_offset + cert_size > len(data):
            raise NotAPeImage("the certificate table overlaps the image")
        end = cert_offset
    if end > hashed:
        digest.update(data[hashed:end])
    return digest.digest()


def _sections(data: bytes, table: int, count: int) -> list[tuple[int, int]]:
    """(PointerToRawData, SizeOfRawData) of each section with raw data, in file order."""
    found = []
    for i in range(count):
        header = table + SECTION_HEADER * i
        size, start = _u32(data, header + 16), _u32(data, header + 20)
        if size:
            found.append((start, size))
    return sorted(found)


def authenticode_file(path: Path) -> str:
    """The Authenticode sha256 of a file, hex."""
    try:
        return authenticode_sha256(path.read_bytes()).hex()
    except NotAPeImage as exc:
        raise NotAPeImage(f"{path}: {exc}") from None
