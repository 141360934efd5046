"""The tyd wire format: pure functions, no I/O.

A frame is an 8-byte header -- magic b"TY", protocol version, message type, payload
length (big endian u32) -- followed by a UTF-8 JSON object. Every field is checked
here; anything else raises `CodecError`, and nothing else escapes.

Each member entry travels as a self-certifying record (protocol 2): `rec` is the entry as
the member signed it (canonical JSON, base64), `sig` its signature and `cert` its
certificate (DER, base64). The codec only parses; tyd.record verifies.
"""

from __future__ import annotations

import base64
import binascii
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
from .member import Member, Proof, State

MAGIC = b"TY"
VERSION = 2  # 2: self-certifying member records
HEADER = struct.Struct(">2sBBI")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 4 << 20  # 4 MiB: a 2048-member map of signed records is ~2.2 MiB
MAX_MEMBERS = 2048
MAX_BODY = 600      # a signed entry's JSON is ~230 bytes
MAX_SIGNATURE = 80  # Ed25519: 64 bytes; ECDSA P-256 (DER): at most 72
MAX_CERT = 2048     # a node certificate (Ed25519 or P-256) is ~450-650 bytes DER
WIRE_STATES = {State.ALIVE.value: State.ALIVE, State.LEFT.value: State.LEFT}
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

def body_bytes(cluster: str, m: Member) -> bytes:
    """The canonical bytes a member signs for its entry (tyd.record.Signer)."""
    return json.dumps({"cluster": cluster, "name": m.name, "address": str(m.address),
                       "fp": m.fingerprint, "state": m.state.value, "inc": m.incarnation,
                       "hb": m.heartbeat, "slots": m.slots, "ts": m.stamp},
                      separators=(",", ":"), sort_keys=True).encode()


def member_to_wire(m: Member) -> dict[str, str]:
    if m.proof is None:
        raise CodecError(f"entry of {m.name} is not signed")
    if m.state not in WIRE_STATES.values():
        raise CodecError(f"entry of {m.name}: state {m.state.value} never travels")
    p = m.proof
    return {"rec": _b64(p.body), "sig": _b64(p.signature), "cert": _b64(p.cert)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


RECORD_KEYS = {"rec", "sig", "cert"}
BODY_KEYS = {"cluster", "name", "address", "fp", "state", "inc", "hb", "slots", "ts"}


def _unb64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > (limit + 2) // 3 * 4:
        raise CodecError(f"{what}: expected base64 of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CodecError(f"{what}: not base64") from None


def member_from_wire(obj: Any, what: str = "member") -> Member:
    """A signed record as claimed: parsed and bounded here, not yet verified."""
    d = _exact_keys(obj, RECORD_KEYS, what)
    body = _unb64(d["rec"], f"{what}.rec", MAX_BODY)
    proof_parts = (_unb64(d["sig"], f"{what}.sig", MAX_SIGNATURE),
                   _unb64(d["cert"], f"{what}.cert", MAX_CERT))
    b = _exact_keys(_json(body, f"{what}.rec"), BODY_KEYS, f"{what}.rec")
    name = _str(b["name"], f"{what}.name", NAME_RE)
    address = b["address"]
    if not isinstance(address, str) or len(address) > 15:
        raise CodecError(f"{what}.address: expected an IPv4 address")
    try:
        ip = _parse_address(address)
    except ValueError as exc:
        raise CodecError(f"{what}.address: {exc}") from None
    state = WIRE_STATES.get(b["state"]) if isinstance(b["state"], str) else None
    if state is None:
        raise CodecError(f"{what}.state: expected alive or left (a node judges death "
                         "itself; nobody can declare another dead)")
    cluster = _str(b["cluster"], f"{what}.cluster", CLUSTER_RE)
    return Member(name=name, address=ip, fingerprint=_str(b["fp"], f"{what}.fp", FP_RE),
                  state=state, incarnation=_int(b["inc"], f"{what}.inc", 0, MAX_INT),
                  heartbeat=_int(b["hb"], f"{what}.hb", 0, MAX_INT),
                  slots=_int(b["slots"], f"{what}.slots", 1, 4096),
                  stamp=_int(b["ts"], f"{what}.ts", 0, MAX_INT),
                  proof=Proof(cluster, body, *proof_parts))


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constants)
    except CodecError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CodecError(f"{what}: not JSON: {str(exc)[:80]}") from None


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
    obj = _json(payload, f"{kind.name}: payload")
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
