"""The tyd wire format: pure functions, no I/O.

A frame is an 8-byte header -- magic b"TY", protocol version, message type, payload
length (big endian u32) -- followed by a UTF-8 JSON object. Every field is checked
here; anything else raises `CodecError`, and nothing else escapes.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import CodecError
from .member import Member, State

MAGIC = b"TY"
VERSION = 1
HEADER = struct.Struct(">2sBBI")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 1 << 20  # 1 MiB: a 2048-member map is ~350 KiB
MAX_MEMBERS = 2048
MAX_REASON = 200
MAX_INT = (1 << 63) - 1
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
CLUSTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
FP_RE = re.compile(r"[0-9a-f]{64}")


class Kind(enum.IntEnum):
    HELLO = 1     # request: add me, send me your map
    WELCOME = 2   # reply to HELLO
    SYNC = 3      # request: here is my map, send me yours (heartbeats ride on it)
    MAP = 4       # reply to SYNC
    LEAVE = 5     # request: I am shutting down cleanly; no reply
    REFUSED = 6   # reply: why the request was refused


REQUESTS = frozenset({Kind.HELLO, Kind.SYNC, Kind.LEAVE})
REPLY_TO = {Kind.HELLO: Kind.WELCOME, Kind.SYNC: Kind.MAP}


@dataclass(frozen=True)
class Message:
    kind: Kind
    cluster: str = ""
    sender: Member | None = None
    members: tuple[Member, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class Header:
    kind: Kind
    length: int


def hello(cluster: str, sender: Member) -> Message:
    return Message(Kind.HELLO, cluster=cluster, sender=sender)


def sync(cluster: str, sender: Member, members: tuple[Member, ...]) -> Message:
    return Message(Kind.SYNC, cluster=cluster, sender=sender, members=members)


def leave(cluster: str, sender: Member) -> Message:
    return Message(Kind.LEAVE, cluster=cluster, sender=sender)


def welcome(members: tuple[Member, ...]) -> Message:
    return Message(Kind.WELCOME, members=members)


def map_reply(members: tuple[Member, ...]) -> Message:
    return Message(Kind.MAP, members=members)


def refused(reason: str) -> Message:
    return Message(Kind.REFUSED, reason=reason[:MAX_REASON])


# -- encoding -------------------------------------------------------------------------

def member_to_wire(m: Member) -> dict[str, Any]:
    return {"name": m.name, "address": str(m.address), "fp": m.fingerprint,
            "state": m.state.value, "inc": m.incarnation, "hb": m.heartbeat, "slots": m.slots}


def _body(msg: Message) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if msg.kind in REQUESTS:
        if msg.sender is None:
            raise CodecError(f"{msg.kind.name} needs a sender")
        body["cluster"] = msg.cluster
        body["sender"] = member_to_wire(msg.sender)
    if msg.kind in (Kind.SYNC, Kind.WELCOME, Kind.MAP):
        body["members"] = [member_to_wire(m) for m in msg.members]
    if msg.kind is Kind.REFUSED:
        body["reason"] = msg.reason
    return body


def encode(msg: Message) -> bytes:
    payload = json.dumps(_body(msg), separators=(",", ":"), ensure_ascii=True).encode()
    if len(payload) > MAX_PAYLOAD:
        raise CodecError(f"{msg.kind.name}: payload of {len(payload)} bytes exceeds "
                         f"{MAX_PAYLOAD}")
    return HEADER.pack(MAGIC, VERSION, msg.kind, len(payload)) + payload


# -- decoding -------------------------------------------------------------------------

def parse_header(data: bytes) -> Header:
    if len(data) != HEADER_SIZE:
        raise CodecError(f"header is {len(data)} bytes, expected {HEADER_SIZE}")
    magic, version, kind, length = HEADER.unpack(data)
    if magic != MAGIC:
        raise CodecError(f"bad magic {magic!r}")
    if version != VERSION:
        raise CodecError(f"unsupported protocol version {version} (this is {VERSION})")
    if kind not in Kind._value2member_map_:
        raise CodecError(f"unknown message type {kind}")
    if length > MAX_PAYLOAD:
        raise CodecError(f"payload of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return Header(Kind(kind), length)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise CodecError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise CodecError(f"non-standard JSON constant {name}")


def _exact_keys(obj: Any, keys: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise CodecError(f"{what}: expected an object, got {type(obj).__name__}")
    if set(obj) != keys:
        raise CodecError(f"{what}: expected keys {sorted(keys)}, got {sorted(obj)[:10]}")
    return obj


def _int(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise CodecError(f"{what}: expected an integer in [{low}, {high}]")
    return value


def _str(value: Any, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise CodecError(f"{what}: invalid value")
    return value


MEMBER_KEYS = {"name", "address", "fp", "state", "inc", "hb", "slots"}


def member_from_wire(obj: Any, what: str = "member") -> Member:
    d = _exact_keys(obj, MEMBER_KEYS, what)
    name = _str(d["name"], f"{what}.name", NAME_RE)
    address = d["address"]
    if not isinstance(address, str) or len(address) > 15:
        raise CodecError(f"{what}.address: expected an IPv4 address")
    try:
        ip = _parse_address(address)
    except ValueError as exc:
        raise CodecError(f"{what}.address: {exc}") from None
    try:
        state = State(d["state"])
    except (ValueError, TypeError):
        raise CodecError(f"{what}.state: expected one of alive, dead, left") from None
    return Member(name=name, address=ip, fingerprint=_str(d["fp"], f"{what}.fp", FP_RE),
                  state=state, incarnation=_int(d["inc"], f"{what}.inc", 0, MAX_INT),
                  heartbeat=_int(d["hb"], f"{what}.hb", 0, MAX_INT),
                  slots=_int(d["slots"], f"{what}.slots", 1, 4096))


@functools.lru_cache(maxsize=4096)
def _parse_address(text: str) -> ipaddress.IPv4Address:
    """Maps repeat the same addresses all day; parsing them is the codec's hot spot."""
    return ipaddress.IPv4Address(text)


def _members(obj: Any) -> tuple[Member, ...]:
    if not isinstance(obj, list) or len(obj) > MAX_MEMBERS:
        raise CodecError(f"members: expected a list of at most {MAX_MEMBERS}")
    out = tuple(member_from_wire(m, f"members[{i}]") for i, m in enumerate(obj))
    if len({m.name for m in out}) != len(out):
        raise CodecError("members: duplicate names")
    return out


KEYS = {
    Kind.HELLO: {"cluster", "sender"},
    Kind.SYNC: {"cluster", "sender", "members"},
    Kind.LEAVE: {"cluster", "sender"},
    Kind.WELCOME: {"members"},
    Kind.MAP: {"members"},
    Kind.REFUSED: {"reason"},
}


def decode_payload(kind: Kind, payload: bytes) -> Message:
    if len(payload) > MAX_PAYLOAD:
        raise CodecError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        obj = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates,
                         parse_constant=_no_constants)
    except CodecError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CodecError(f"{kind.name}: payload is not JSON: {str(exc)[:80]}") from None
    d = _exact_keys(obj, KEYS[kind], kind.name)
    cluster = _str(d["cluster"], "cluster", CLUSTER_RE) if "cluster" in d else ""
    sender = member_from_wire(d["sender"], "sender") if "sender" in d else None
    members = _members(d["members"]) if "members" in d else ()
    reason = ""
    if "reason" in d:
        if not isinstance(d["reason"], str) or len(d["reason"]) > MAX_REASON:
            raise CodecError(f"reason: expected a string of at most {MAX_REASON} characters")
        reason = d["reason"]
    return Message(kind, cluster=cluster, sender=sender, members=members, reason=reason)


def decode(frame: bytes) -> Message:
    """Decode one whole frame (header and payload, nothing more)."""
    header = parse_header(frame[:HEADER_SIZE])
    payload = frame[HEADER_SIZE:]
    if len(payload) != header.length:
        raise CodecError(f"frame carries {len(payload)} payload bytes, header says "
                         f"{header.length}")
    return decode_payload(header.kind, payload)
