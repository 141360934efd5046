"""The wire codec: round trips, and no input ever raises anything but CodecError.
(The codec parses signed records; whether a record is authentic is tyd.record's test.)"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import ipaddress
import json
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tyd import codec
from tyd.codec import HEADER, MAGIC, MAX_PAYLOAD, VERSION, Kind
from tyd.errors import CodecError
from tyd.member import Member, Proof, State


def signed(m: Member) -> Member:
    """m with a proof of the right shape (signature and certificate bytes are not checked
    by the codec)."""
    return dataclasses.replace(
        m, proof=Proof("chaos-lab", codec.body_bytes("chaos-lab", m), bytes(64), b"\x30" * 480)
    )


def same(a: codec.Message, b: codec.Message) -> bool:
    """Equal messages, proofs included (Member equality leaves the proof out)."""
    proofs = [m.proof for m in ((a.sender,) if a.sender else ()) + a.members]
    return a == b and proofs == [m.proof for m in ((b.sender,) if b.sender else ()) + b.members]


names = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12).map(
    lambda s: f"n{s}"
)
members = st.builds(
    Member,
    name=names,
    address=st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    fingerprint=st.binary(min_size=32, max_size=32).map(bytes.hex),
    state=st.sampled_from([State.ALIVE, State.LEFT]),
    incarnation=st.integers(0, codec.MAX_INT),
    heartbeat=st.integers(0, codec.MAX_INT),
    slots=st.integers(1, 4096),
    stamp=st.integers(0, codec.MAX_INT),
).map(signed)
member_lists = st.lists(members, max_size=6, unique_by=lambda m: m.name).map(tuple)
messages = st.one_of(
    st.builds(codec.hello, st.just("chaos-lab"), members),
    st.builds(codec.sync, st.just("chaos-lab"), members, member_lists),
    st.builds(codec.leave, st.just("chaos-lab"), members),
    st.builds(codec.welcome, member_lists),
    st.builds(codec.map_reply, member_lists),
    st.builds(codec.refused, st.text(max_size=300)),
)


@given(messages)
def test_round_trip(msg: codec.Message) -> None:
    assert same(codec.decode(codec.encode(msg)), msg)


def _frame(kind: int, payload: bytes, version: int = VERSION, magic: bytes = MAGIC) -> bytes:
    return HEADER.pack(magic, version, kind, len(payload)) + payload


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        codec.decode(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(Kind), json_values)
def test_well_framed_garbage_json_raises_only_codec_error(kind: Kind, value: object) -> None:
    frame = _frame(kind, json.dumps(value).encode())
    with contextlib.suppress(CodecError):
        codec.decode(frame)


MUTATIONS_PER_EXAMPLE = 120
MUTATION_EXAMPLES = 100  # 12,000 mutated frames in all


def _mutate(frame: bytearray, rnd: random.Random) -> bytes:
    for _ in range(rnd.randint(1, 4)):
        pos = rnd.randrange(len(frame)) if frame else 0
        op = rnd.choice("fcix")
        if op == "f" and frame:
            frame[pos] ^= rnd.randint(1, 255)
        elif op == "c":
            del frame[pos : pos + rnd.randint(1, 8)]
        elif op == "i":
            frame[pos:pos] = rnd.randbytes(rnd.randint(1, 8))
        else:  # rewrite the declared length: truncated and overlong payloads
            frame[4:8] = struct.pack(
                ">I", rnd.choice([0, len(frame), 2**32 - 1, rnd.randrange(2**21)])
            )
    return bytes(frame)


@settings(
    max_examples=MUTATION_EXAMPLES, suppress_health_check=[HealthCheck.too_slow], deadline=None
)
@given(messages, st.integers(0, 2**32))
def test_mutated_valid_frames_raise_only_codec_error(msg: codec.Message, seed: int) -> None:
    rnd = random.Random(seed)
    valid = codec.encode(msg)
    rejected = 0
    for _ in range(MUTATIONS_PER_EXAMPLE):
        frame = _mutate(bytearray(valid), rnd)
        try:
            decoded = codec.decode(frame)
        except CodecError:
            rejected += 1
            continue
        assert same(codec.decode(codec.encode(decoded)), decoded)  # accepted: well-formed
    assert rejected > 0


GOOD = signed(
    Member("node01", ipaddress.IPv4Address("10.0.0.1"), "a" * 64, State.ALIVE, 1, 2, 4, stamp=5)
)


def _with_body(**fields: object) -> dict[str, str]:
    wire = codec.member_to_wire(GOOD)
    body = json.loads(base64.b64decode(wire["rec"]))
    body.update(fields)
    return {**wire, "rec": base64.b64encode(json.dumps(body).encode()).decode()}


def test_member_fields_are_checked() -> None:
    codec.member_from_wire(codec.member_to_wire(GOOD))
    for field, bad in [
        ("name", "Node_01"),
        ("name", "x" * 70),
        ("address", "10.0.0.256"),
        ("address", 167772161),
        ("fp", "A" * 64),
        ("state", "suspect"),
        ("inc", -1),
        ("inc", True),
        ("hb", 2**63),
        ("slots", 0),
        ("slots", 1.0),
        ("ts", -5),
        ("cluster", ""),
    ]:
        with pytest.raises(CodecError, match=field):
            codec.member_from_wire(_with_body(**{field: bad}))
    with pytest.raises(CodecError, match="expected keys"):
        codec.member_from_wire(_with_body(extra=1))
    with pytest.raises(CodecError, match="expected keys"):
        codec.member_from_wire({**codec.member_to_wire(GOOD), "extra": "x"})


def test_nobody_can_say_another_node_is_dead_on_the_wire() -> None:
    with pytest.raises(CodecError, match="nobody can declare another dead"):
        codec.member_from_wire(_with_body(state="dead"))
    with pytest.raises(CodecError, match="never travels"):
        codec.member_to_wire(dataclasses.replace(GOOD, state=State.DEAD))


def test_unsigned_entries_are_not_encoded() -> None:
    with pytest.raises(CodecError, match="not signed"):
        codec.member_to_wire(dataclasses.replace(GOOD, proof=None))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sig", "A" * 200, "sig: expected base64 of at most 80"),
        ("cert", "A" * 4000, "cert: expected base64 of at most 2048"),
        ("rec", "not base64!", "rec: not base64"),
        ("rec", base64.b64encode(b"[1]").decode(), "rec: expected an object"),
        ("rec", base64.b64encode(b"\xff").decode(), "rec: not JSON"),
    ],
)
def test_record_envelope_is_bounded(field: str, value: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        codec.member_from_wire({**codec.member_to_wire(GOOD), field: value})


@pytest.mark.parametrize(
    "frame, message",
    [
        (_frame(1, b"{}", magic=b"XX"), "bad magic"),
        (_frame(1, b"{}", version=1), "unsupported protocol version 1"),
        (_frame(99, b"{}"), "unknown message type 99"),
        (HEADER.pack(MAGIC, VERSION, 1, MAX_PAYLOAD + 1), "exceeds"),
        (_frame(1, b"{}")[:5], "header is 5 bytes"),
        (_frame(1, b"{}") + b"x", "header says 2"),
        (_frame(6, b'{"reason":"a","reason":"b"}'), "duplicate key"),
        (_frame(6, b'{"reason":NaN}'), "non-standard JSON constant"),
        (_frame(6, b"\xff\xfe"), "not JSON"),
        (_frame(4, b"[" * 100000), "not JSON"),
        (_frame(6, json.dumps({"reason": "x" * 201}).encode()), "at most 200"),
    ],
)
def test_specific_malformed_frames(frame: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        codec.decode(frame)


def test_oversized_header_is_refused_before_any_payload_is_read() -> None:
    header = struct.pack(">2sBBI", MAGIC, VERSION, Kind.SYNC, 2**32 - 1)
    with pytest.raises(CodecError, match="exceeds"):
        codec.parse_header(header)


def test_duplicate_members_refused() -> None:
    with pytest.raises(CodecError, match="duplicate names"):
        codec.decode(codec.encode(codec.welcome((GOOD, GOOD))))


def test_encode_refuses_oversized_maps() -> None:
    many = tuple(
        signed(Member(f"n{i}", ipaddress.IPv4Address(i), "a" * 64, State.ALIVE, 1, 1))
        for i in range(5000)
    )
    with pytest.raises(CodecError, match="exceeds"):
        codec.encode(codec.welcome(many))
