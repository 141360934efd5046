"""Frames over asyncio streams. Every read and write is bounded by a timeout."""

from __future__ import annotations

import asyncio
import contextlib

from . import codec
from .codec import Message


async def read_message(reader: asyncio.StreamReader, timeout: float) -> Message:
    """Read one frame. Raises CodecError, TimeoutError, IncompleteReadError or OSError."""
    header = codec.parse_header(
        await asyncio.wait_for(reader.readexactly(codec.HEADER_SIZE), timeout)
    )
    payload = await asyncio.wait_for(reader.readexactly(header.length), timeout)
    return codec.decode_payload(header.kind, payload)


async def write_message(writer: asyncio.StreamWriter, msg: Message, timeout: float) -> None:
    writer.write(codec.encode(msg))
    await asyncio.wait_for(writer.drain(), timeout)


async def close(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Close without ever hanging on a peer that stopped reading."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except (TimeoutError, OSError):
        # An SSL transport may already have dropped its protocol: nothing left to abort.
        with contextlib.suppress(AttributeError, OSError, RuntimeError):
            writer.transport.abort()
