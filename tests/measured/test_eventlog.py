"""The crypto-agile event log: parsed totally (any bytes: a log or EventLogError), encoded
and replayed as the TPM extends."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.measured.eventlog import (
    EV_IPL,
    EV_NO_ACTION,
    EV_SEPARATOR,
    SHA1,
    SHA256,
    Event,
    EventLogError,
    encode_event_log,
    measured,
    parse_event_log,
)

BANKS = (SHA1, SHA256)


def test_round_trip_and_replay_of_two_banks():
    events = [
        measured(0, EV_IPL, b"crtm", banks=BANKS),
        measured(0, EV_SEPARATOR, b"\0\0\0\0", banks=BANKS),
        measured(9, EV_IPL, b"/initrd.img\0", b"the initrd", BANKS),
    ]
    data = encode_event_log(BANKS, events)
    log = parse_event_log(data)
    assert log.banks == ((SHA1, 20), (SHA256, 32))
    assert list(log.events) == events
    assert encode_event_log(BANKS, log.events) == data
    pcr0 = bytes(32)
    for payload in (b"crtm", b"\0\0\0\0"):
        pcr0 = hashlib.sha256(pcr0 + hashlib.sha256(payload).digest()).digest()
    replayed = log.replay(SHA256)
    assert replayed[0] == pcr0
    assert (
        replayed[9] == hashlib.sha256(bytes(32) + hashlib.sha256(b"the initrd").digest()).digest()
    )
    assert set(log.replay(SHA1)) == {0, 9}


def test_startup_locality_sets_pcr0s_first_value_and_no_action_is_not_extended():
    locality = Event(0, EV_NO_ACTION, ((SHA256, bytes(32)),), b"StartupLocality\0\x03")
    crtm = measured(0, EV_IPL, b"crtm")
    log = parse_event_log(encode_event_log([SHA256], [locality, crtm]))
    start = bytes(31) + b"\x03"
    assert log.replay(SHA256)[0] == hashlib.sha256(start + crtm.digests[0][1]).digest()


def header_with(banks: bytes, count: int) -> bytes:
    spec = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, count) + banks + b"\0"
    return struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec)) + spec


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "truncated"),
        (struct.pack("<II", 0, 4) + bytes(40), "not the Spec ID event"),
        (header_with(b"", 0), "names 0 digest banks"),
        (header_with(struct.pack("<HH", SHA256, 20), 1), "unknown digest bank"),
        (header_with(struct.pack("<HHHH", SHA256, 32, SHA256, 32), 2), "named twice"),
        (encode_event_log([SHA256], [measured(4, EV_IPL, b"x")])[:-1], "truncated"),
        (encode_event_log([SHA256], [measured(99, EV_IPL, b"x")]), "extends PCR 99"),
        (encode_event_log([SHA256], [Event(4, EV_IPL, (), b"x")]), "has 0 digests"),
    ],
)
def test_malformed_logs_are_refused_with_a_reason(data: bytes, why: str):
    with pytest.raises(EventLogError, match=why):
        parse_event_log(data)


def test_a_log_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(EventLogError, match="limit"):
        parse_event_log(bytes(5 << 20))


@given(st.binary(max_size=4096))
def test_any_bytes_give_a_log_or_event_log_error(data: bytes):
    try:
        log = parse_event_log(data)
    except EventLogError:
        return
    log.replay(log.banks[0][0])


GENUINE = encode_event_log(
    BANKS, [measured(p, EV_IPL, b"event %d" % p, banks=BANKS) for p in (0, 4, 7, 8, 9, 14)]
)


@given(
    st.integers(0, len(GENUINE) - 1),
    st.binary(min_size=1, max_size=16),
    st.integers(0, len(GENUINE)),
)
def test_a_damaged_genuine_log_gives_a_log_or_event_log_error(at: int, patch: bytes, cut: int):
    damaged = (GENUINE[:at] + patch + GENUINE[at + len(patch) :])[:cut]
    with contextlib.suppress(EventLogError):
        parse_event_log(damaged)
