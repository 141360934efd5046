"""A minimal DER reader and writer for tests that build impossible certificates and CSRs:
they are nested TLVs with single-byte tags and definite lengths."""

from __future__ import annotations

Tlv = tuple[int, bytes]


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def children(data: bytes) -> list[Tlv]:
    """The TLVs one after another in `data` (single-byte tags, definite lengths: DER)."""
    out, i = [], 0
    while i < len(data):
        tag, first = data[i], data[i + 1]
        i += 2
        if first & 0x80:
            size = first & 0x7F
            length = int.from_bytes(data[i : i + size], "big")
            i += size
        else:
            length = first
        out.append((tag, data[i : i + length]))
        i += length
    return out
