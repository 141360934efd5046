"""A bounds-checked reader of binary structures: every short read raises the caller's error
type (the event log is little-endian, TPM structures big-endian)."""

from __future__ import annotations

import struct


class Reader:
    def __init__(self, data: bytes, what: str, order: str, error: type[ValueError]) -> None:
        self.data, self.at, self.what, self.order, self.error = data, 0, what, order, error

    def take(self, count: int, where: str = "") -> bytes:
        if self.at + count > len(self.data):
            raise self.error(
                f"{self.what} is truncated in {where or 'a field'} at offset {self.at}"
            )
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def unpack(self, fmt: str, where: str = "") -> int:
        size = struct.calcsize(self.order + fmt)
        return int(struct.unpack(self.order + fmt, self.take(size, where))[0])

    def sized(self, where: str = "") -> bytes:
        """A TPM2B: a big-endian u16 size, then that many bytes."""
        return self.take(self.unpack("H", where), where)

    @property
    def left(self) -> int:
        return len(self.data) - self.at

    def end(self) -> None:
        if self.left:
            raise self.error(f"{self.what} has {self.left} trailing bytes")
