"""The tyd wire format: pure functions, no I/O.

A frame is an 8-byte header -- magic b"TY", protocol version, message type, payload
length (big endian u32) -- followed by a UTF-8 JSON object. Every field is checked
here; anything else raises `CodecError`, and nothing else escapes.

Each member entry travels as a self-certifying record (protocol 2): `rec` is the entry as
the member signed it (canonical JSON, base64), `sig` its signature and `cert` its
certificate (DER, base64). The codec only parses; tyd.record verifies.

Digest gossip (DIGEST -> DELTA, same protocol version, new message types): the asker
sends its own record without the certificate (the TLS handshake carried it), its newest
heartbeat and a summary of what it holds, `name:rev:beat` per member (rev: 8 hex digits
of the record's signature, `-` when it lacks the member's certificate); the answer holds
only the records whose rev differs (with the certificate when the asker lacks the member
or asked for it), the heartbeats newer than the asker's, and `want`: the members whose
summary entry was newer or unknown there (`name+`: with the certificate, `name.`: only
its heartbeat); the asker then
PUSHes those on the same connection. A heartbeat (tyd.member.Beat) is a small signed
record without a certificate.

Swim gossip (tyd.swim; new message types again): PROBE carries the asker's record without
its certificate and one digest per bucket of the map (BUCKETS of them, 16 hex digits each),
so its size does not depend on the number of members; ACK names the buckets that differ
(`diff`) and the answerer's summary of those buckets only; then SWAP (the records and
accusations the answerer lacks, and what the asker wants) and GIVE (what was wanted). An
accusation (tyd.member.Accusation) is `[target, inc, hb, accuser, ts, sig]`. PROBE_REQ asks
a member to probe `target` for the asker (an indirect probe); PROBED says whether it answered.
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
from .member import Accusation, Beat, Member, Proof, State

MAGIC = b"TY"
VERSION = 2  # 2: self-certifying member records
HEADER = struct.Struct(">2sBBI")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 4 << 20  # 4 MiB: a 2048-member map of signed records is ~2.2 MiB
MAX_MEMBERS = 2048
MAX_BODY = 600  # a signed entry's JSON is ~230 bytes
MAX_SIGNATURE = 80  # Ed25519: 64 bytes; ECDSA P-256 (DER): at most 72
MAX_CERT = 2048  # a node certificate (Ed25519 or P-256) is ~450-650 bytes DER
WIRE_STATES = {State.ALIVE.value: State.ALIVE, State.LEFT.value: State.LEFT}
MAX_REASON = 200
MAX_INT = (1 << 63) - 1
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
CLUSTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
FP_RE = re.compile(r"[0-9a-f]{64}")


class Kind(enum.IntEnum):
    HELLO = 1  # request: add me, send me your map
    WELCOME = 2  # reply to HELLO
    SYNC = 3  # request: here is my map, send me yours (heartbeats ride on it)
    MAP = 4  # reply to SYNC
    LEAVE = 5  # request: I am shutting down cleanly; no reply
    REFUSED = 6  # reply: why the request was refused
    DIGEST = 7  # request: my record, my heartbeat, a summary of what I hold
    DELTA = 8  # reply to DIGEST: only what the summary lacks, and what it wants back
    PUSH = 9  # after DELTA, same connection: what it wanted
    PROBE = 10  # request (swim): my record, one digest per bucket of my map
    ACK = 11  # reply to PROBE: the buckets that differ, my summary of those
    SWAP = 12  # after ACK, same connection: what the answerer lacks, what I want
    GIVE = 13  # after SWAP: what was wanted
    PROBE_REQ = 14  # request (swim): probe `target` for me (an indirect probe)
    PROBED = 15  # reply to PROBE_REQ: did it answer


REQUESTS = frozenset({Kind.HELLO, Kind.SYNC, Kind.LEAVE, Kind.DIGEST, Kind.PROBE, Kind.PROBE_REQ})
REPLY_TO = {
    Kind.HELLO: Kind.WELCOME,
    Kind.SYNC: Kind.MAP,
    Kind.DIGEST: Kind.DELTA,
    Kind.PROBE: Kind.ACK,
    Kind.PROBE_REQ: Kind.PROBED,
}
LEAN_OK = frozenset(
    {Kind.DIGEST, Kind.DELTA, Kind.PUSH, Kind.PROBE, Kind.SWAP, Kind.GIVE, Kind.PROBE_REQ}
)
LEAN_SENDER = frozenset({Kind.DIGEST, Kind.PROBE, Kind.PROBE_REQ})  # TLS carried the cert
BUCKETS = 32  # a PROBE carries this many bucket digests, whatever the size of the map
BUCKET_RE = re.compile(r"[0-9a-f]{16}")
WANT_CERT = "+"
WANT_BEAT = "."  # records may come without certificates
REV_RE = re.compile(r"[0-9a-f]{8}|-")
MAX_HAVE = MAX_MEMBERS * 96  # name (63) + rev (8) + beat (19) + separators


@dataclass(frozen=True)
class Have:
    """One member in a DIGEST summary: its record's rev and the newest beat count held."""

    name: str
    rev: str
    beat: int


@dataclass(frozen=True)
class Message:
    kind: Kind
    cluster: str = ""
    sender: Member | None = None
    members: tuple[Member, ...] = ()
    reason: str = ""
    beat: Beat | None = None
    have: tuple[Have, ...] = ()
    beats: tuple[Beat, ...] = ()
    want: tuple[str, ...] = ()  # member names; WANT_CERT appended: with its certificate
    buckets: tuple[str, ...] = ()  # PROBE: one digest per bucket
    diff: tuple[int, ...] = ()  # ACK: the buckets that differ
    accusations: tuple[Accusation, ...] = ()
    target: str = ""  # PROBE_REQ
    ok: bool = False  # PROBED


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


def digest(cluster: str, sender: Member, beat: Beat, have: tuple[Have, ...]) -> Message:
    return Message(Kind.DIGEST, cluster=cluster, sender=sender, beat=beat, have=have)


def delta(
    records: tuple[Member, ...], beats: tuple[Beat, ...], want: tuple[str, ...] = ()
) -> Message:
    return Message(Kind.DELTA, members=records, beats=beats, want=want)


def push(records: tuple[Member, ...], beats: tuple[Beat, ...]) -> Message:
    return Message(Kind.PUSH, members=records, beats=beats)


def probe(cluster: str, sender: Member, buckets: tuple[str, ...]) -> Message:
    return Message(Kind.PROBE, cluster=cluster, sender=sender, buckets=buckets)


def ack(diff: tuple[int, ...], have: tuple[Have, ...]) -> Message:
    return Message(Kind.ACK, diff=diff, have=have)


def swap(
    records: tuple[Member, ...], accusations: tuple[Accusation, ...], want: tuple[str, ...]
) -> Message:
    return Message(Kind.SWAP, members=records, accusations=accusations, want=want)


def give(records: tuple[Member, ...], accusations: tuple[Accusation, ...]) -> Message:
    return Message(Kind.GIVE, members=records, accusations=accusations)


def probe_req(cluster: str, sender: Member, target: str) -> Message:
    return Message(Kind.PROBE_REQ, cluster=cluster, sender=sender, target=target)


def probed(ok: bool) -> Message:
    return Message(Kind.PROBED, ok=ok)


def welcome(members: tuple[Member, ...]) -> Message:
    return Message(Kind.WELCOME, members=members)


def map_reply(members: tuple[Member, ...]) -> Message:
    return Message(Kind.MAP, members=members)


def refused(reason: str) -> Message:
    return Message(Kind.REFUSED, reason=reason[:MAX_REASON])


# -- encoding -------------------------------------------------------------------------


def body_bytes(cluster: str, m: Member) -> bytes:
    """The canonical bytes a member signs for its entry (tyd.record.Signer)."""
    return json.dumps(
        {
            "cluster": cluster,
            "name": m.name,
            "address": str(m.address),
            "fp": m.fingerprint,
            "state": m.state.value,
            "inc": m.incarnation,
            "hb": m.heartbeat,
            "slots": m.slots,
            "ts": m.stamp,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def beat_bytes(cluster: str, b: Beat) -> bytes:
    """The canonical bytes a member signs for a heartbeat."""
    return json.dumps(
        {"cluster": cluster, "name": b.name, "inc": b.incarnation, "beat": b.count, "ts": b.stamp},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def accusation_bytes(cluster: str, a: Accusation) -> bytes:
    """The canonical bytes an accuser signs."""
    return json.dumps(
        {
            "cluster": cluster,
            "target": a.target,
            "inc": a.incarnation,
            "hb": a.heartbeat,
            "by": a.accuser,
            "ts": a.stamp,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def member_to_wire(m: Member, cert: bool = True) -> dict[str, str]:
    """A signed record; without `cert` its certificate stays behind (digest gossip)."""
    if m.proof is None:
        raise CodecError(f"entry of {m.name} is not signed")
    if m.state not in WIRE_STATES.values():
        raise CodecError(f"entry of {m.name}: state {m.state.value} never travels")
    p = m.proof
    out = {"rec": _b64(p.body), "sig": _b64(p.signature)}
    if cert and p.cert:
        out["cert"] = _b64(p.cert)
    return out


def beat_to_wire(b: Beat) -> list[Any]:
    return [b.name, b.incarnation, b.count, b.stamp, _b64(b.signature)]


def accusation_to_wire(a: Accusation) -> list[Any]:
    return [a.target, a.incarnation, a.heartbeat, a.accuser, a.stamp, _b64(a.signature)]


def have_to_wire(have: tuple[Have, ...]) -> str:
    return " ".join(f"{h.name}:{h.rev}:{h.beat}" for h in have)


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
    if msg.kind is Kind.DIGEST:
        body["sender"] = member_to_wire(msg.sender, cert=False)  # type: ignore[arg-type]
        if msg.beat is None:
            raise CodecError("DIGEST needs the sender's heartbeat")
        body["beat"] = beat_to_wire(msg.beat)
        body["have"] = have_to_wire(msg.have)
    if msg.kind in (Kind.DELTA, Kind.PUSH):
        body["records"] = [member_to_wire(m) for m in msg.members]
        body["beats"] = [beat_to_wire(b) for b in msg.beats]
    if msg.kind is Kind.DELTA:
        body["want"] = " ".join(msg.want)
    if msg.kind in (Kind.PROBE, Kind.PROBE_REQ):
        body["sender"] = member_to_wire(msg.sender, cert=False)  # type: ignore[arg-type]
    if msg.kind is Kind.PROBE:
        body["buckets"] = " ".join(msg.buckets)
    if msg.kind is Kind.ACK:
        body["diff"] = [*msg.diff]
        body["have"] = have_to_wire(msg.have)
    if msg.kind in (Kind.SWAP, Kind.GIVE):
        body["records"] = [member_to_wire(m) for m in msg.members]
        body["accusations"] = [accusation_to_wire(a) for a in msg.accusations]
    if msg.kind is Kind.SWAP:
        body["want"] = " ".join(msg.want)
    if msg.kind is Kind.PROBE_REQ:
        body["target"] = msg.target
    if msg.kind is Kind.PROBED:
        body["ok"] = msg.ok
    if msg.kind is Kind.REFUSED:
        body["reason"] = msg.reason
    return body


def encode(msg: Message) -> bytes:
    payload = json.dumps(_body(msg), separators=(",", ":"), ensure_ascii=True).encode()
    if len(payload) > MAX_PAYLOAD:
        raise CodecError(f"{msg.kind.name}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
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
LEAN_KEYS = {"rec", "sig"}
BODY_KEYS = {"cluster", "name", "address", "fp", "state", "inc", "hb", "slots", "ts"}


def _unb64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > (limit + 2) // 3 * 4:
        raise CodecError(f"{what}: expected base64 of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CodecError(f"{what}: not base64") from None


def member_from_wire(obj: Any, what: str = "member", lean: bool = False) -> Member:
    """A signed record as claimed: parsed and bounded here, not yet verified. With `lean`
    the certificate may stay behind (its proof then holds b"": the receiver supplies it)."""
    keys = LEAN_KEYS if lean and isinstance(obj, dict) and "cert" not in obj else RECORD_KEYS
    d = _exact_keys(obj, keys, what)
    body = _unb64(d["rec"], f"{what}.rec", MAX_BODY)
    proof_parts = (
        _unb64(d["sig"], f"{what}.sig", MAX_SIGNATURE),
        _unb64(d["cert"], f"{what}.cert", MAX_CERT) if "cert" in d else b"",
    )
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
        raise CodecError(
            f"{what}.state: expected alive or left (a node judges death "
            "itself; nobody can declare another dead)"
        )
    cluster = _str(b["cluster"], f"{what}.cluster", CLUSTER_RE)
    return Member(
        name=name,
        address=ip,
        fingerprint=_str(b["fp"], f"{what}.fp", FP_RE),
        state=state,
        incarnation=_int(b["inc"], f"{what}.inc", 0, MAX_INT),
        heartbeat=_int(b["hb"], f"{what}.hb", 0, MAX_INT),
        slots=_int(b["slots"], f"{what}.slots", 1, 4096),
        stamp=_int(b["ts"], f"{what}.ts", 0, MAX_INT),
        proof=Proof(cluster, body, *proof_parts),
    )


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(
            data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except CodecError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CodecError(f"{what}: not JSON: {str(exc)[:80]}") from None


@functools.lru_cache(maxsize=4096)
def _parse_address(text: str) -> ipaddress.IPv4Address:
    """Maps repeat the same addresses all day; parsing them is the codec's hot spot."""
    return ipaddress.IPv4Address(text)


def _members(obj: Any, what: str = "members", lean: bool = False) -> tuple[Member, ...]:
    if not isinstance(obj, list) or len(obj) > MAX_MEMBERS:
        raise CodecError(f"{what}: expected a list of at most {MAX_MEMBERS}")
    out = tuple(member_from_wire(m, f"{what}[{i}]", lean) for i, m in enumerate(obj))
    if len({m.name for m in out}) != len(out):
        raise CodecError(f"{what}: duplicate names")
    return out


def beat_from_wire(obj: Any, what: str = "beat") -> Beat:
    if not isinstance(obj, list) or len(obj) != 5:
        raise CodecError(f"{what}: expected [name, inc, beat, ts, sig]")
    return Beat(
        name=_str(obj[0], f"{what}.name", NAME_RE),
        incarnation=_int(obj[1], f"{what}.inc", 0, MAX_INT),
        count=_int(obj[2], f"{what}.beat", 0, MAX_INT),
        stamp=_int(obj[3], f"{what}.ts", 0, MAX_INT),
        signature=_unb64(obj[4], f"{what}.sig", MAX_SIGNATURE),
    )


def _beats(obj: Any) -> tuple[Beat, ...]:
    if not isinstance(obj, list) or len(obj) > MAX_MEMBERS:
        raise CodecError(f"beats: expected a list of at most {MAX_MEMBERS}")
    out = tuple(beat_from_wire(b, f"beats[{i}]") for i, b in enumerate(obj))
    if len({b.name for b in out}) != len(out):
        raise CodecError("beats: duplicate names")
    return out


def accusation_from_wire(obj: Any, what: str = "accusation") -> Accusation:
    if not isinstance(obj, list) or len(obj) != 6:
        raise CodecError(f"{what}: expected [target, inc, hb, accuser, ts, sig]")
    return Accusation(
        target=_str(obj[0], f"{what}.target", NAME_RE),
        incarnation=_int(obj[1], f"{what}.inc", 0, MAX_INT),
        heartbeat=_int(obj[2], f"{what}.hb", 0, MAX_INT),
        accuser=_str(obj[3], f"{what}.accuser", NAME_RE),
        stamp=_int(obj[4], f"{what}.ts", 0, MAX_INT),
        signature=_unb64(obj[5], f"{what}.sig", MAX_SIGNATURE),
    )


def _accusations(obj: Any) -> tuple[Accusation, ...]:
    if not isinstance(obj, list) or len(obj) > MAX_MEMBERS:
        raise CodecError(f"accusations: expected a list of at most {MAX_MEMBERS}")
    out = tuple(accusation_from_wire(a, f"accusations[{i}]") for i, a in enumerate(obj))
    if len({a.target for a in out}) != len(out):
        raise CodecError("accusations: duplicate targets")
    return out


def _buckets(obj: Any) -> tuple[str, ...]:
    if not isinstance(obj, str) or len(obj) != BUCKETS * 17 - 1:
        raise CodecError(f"buckets: expected {BUCKETS} digests of 16 hex digits")
    out = tuple(obj.split(" "))
    if len(out) != BUCKETS:
        raise CodecError(f"buckets: expected {BUCKETS} digests of 16 hex digits")
    for i, b in enumerate(out):
        _str(b, f"buckets[{i}]", BUCKET_RE)
    return out


def _diff(obj: Any) -> tuple[int, ...]:
    if not isinstance(obj, list) or len(obj) > BUCKETS:
        raise CodecError(f"diff: expected a list of at most {BUCKETS} bucket numbers")
    out = tuple(_int(b, f"diff[{i}]", 0, BUCKETS - 1) for i, b in enumerate(obj))
    if len(set(out)) != len(out):
        raise CodecError("diff: duplicate buckets")
    return out


def _want(obj: Any) -> tuple[str, ...]:
    if not isinstance(obj, str) or len(obj) > MAX_MEMBERS * 65:
        raise CodecError(f"want: expected a string of at most {MAX_MEMBERS * 65} characters")
    out = tuple(obj.split(" ")) if obj else ()
    for i, item in enumerate(out):
        _str(item.removesuffix(WANT_CERT).removesuffix(WANT_BEAT), f"want[{i}]", NAME_RE)
    if len(out) > MAX_MEMBERS or len(set(out)) != len(out):
        raise CodecError(f"want: at most {MAX_MEMBERS} distinct names")
    return out


def _have(obj: Any) -> tuple[Have, ...]:
    if not isinstance(obj, str) or len(obj) > MAX_HAVE:
        raise CodecError(f"have: expected a string of at most {MAX_HAVE} characters")
    out = []
    for i, item in enumerate(obj.split(" ") if obj else ()):
        parts = item.split(":")
        if len(parts) != 3 or not parts[2].isdigit() or len(parts[2]) > 19:
            raise CodecError(f"have[{i}]: expected name:rev:beat")
        out.append(
            Have(
                _str(parts[0], f"have[{i}].name", NAME_RE),
                _str(parts[1], f"have[{i}].rev", REV_RE),
                _int(int(parts[2]), f"have[{i}].beat", 0, MAX_INT),
            )
        )
    if len(out) > MAX_MEMBERS or len({h.name for h in out}) != len(out):
        raise CodecError(f"have: at most {MAX_MEMBERS} distinct names")
    return tuple(out)


KEYS = {
    Kind.HELLO: {"cluster", "sender"},
    Kind.SYNC: {"cluster", "sender", "members"},
    Kind.LEAVE: {"cluster", "sender"},
    Kind.WELCOME: {"members"},
    Kind.MAP: {"members"},
    Kind.REFUSED: {"reason"},
    Kind.DIGEST: {"cluster", "sender", "beat", "have"},
    Kind.DELTA: {"records", "beats", "want"},
    Kind.PUSH: {"records", "beats"},
    Kind.PROBE: {"cluster", "sender", "buckets"},
    Kind.ACK: {"diff", "have"},
    Kind.SWAP: {"records", "accusations", "want"},
    Kind.GIVE: {"records", "accusations"},
    Kind.PROBE_REQ: {"cluster", "sender", "target"},
    Kind.PROBED: {"ok"},
}


def decode_payload(kind: Kind, payload: bytes) -> Message:
    if len(payload) > MAX_PAYLOAD:
        raise CodecError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    obj = _json(payload, f"{kind.name}: payload")
    d = _exact_keys(obj, KEYS[kind], kind.name)
    cluster = _str(d["cluster"], "cluster", CLUSTER_RE) if "cluster" in d else ""
    lean = kind in LEAN_OK
    sender = member_from_wire(d["sender"], "sender", lean) if "sender" in d else None
    members = _members(d["members"]) if "members" in d else ()
    if "records" in d:
        members = _members(d["records"], "records", lean)
    beat = beat_from_wire(d["beat"]) if "beat" in d else None
    have = _have(d["have"]) if "have" in d else ()
    want = _want(d["want"]) if "want" in d else ()
    beats = _beats(d["beats"]) if "beats" in d else ()
    accusations = _accusations(d["accusations"]) if "accusations" in d else ()
    buckets = _buckets(d["buckets"]) if "buckets" in d else ()
    diff = _diff(d["diff"]) if "diff" in d else ()
    target = _str(d["target"], "target", NAME_RE) if "target" in d else ""
    ok = d.get("ok", False)
    if type(ok) is not bool:
        raise CodecError("ok: expected true or false")
    reason = ""
    if "reason" in d:
        if not isinstance(d["reason"], str) or len(d["reason"]) > MAX_REASON:
            raise CodecError(f"reason: expected a string of at most {MAX_REASON} characters")
        reason = d["reason"]
    return Message(
        kind,
        cluster=cluster,
        sender=sender,
        members=members,
        reason=reason,
        beat=beat,
        have=have,
        beats=beats,
        want=want,
        buckets=buckets,
        diff=diff,
        accusations=accusations,
        target=target,
        ok=ok,
    )


def decode(frame: bytes) -> Message:
    """Decode one whole frame (header and payload, nothing more)."""
    header = parse_header(frame[:HEADER_SIZE])
    payload = frame[HEADER_SIZE:]
    if len(payload) != header.length:
        raise CodecError(f"frame carries {len(payload)} payload bytes, header says {header.length}")
    return decode_payload(header.kind, payload)
