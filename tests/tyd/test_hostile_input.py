"""Every frame gives a value or a typed refusal, never another exception (issue 19): the
codec answers a Message or CodecError, the verifier a Member or RecordError, for valid
envelopes with hostile contents (tests/tyd/wire_strategies.py)."""

from __future__ import annotations

import ipaddress

import pytest
from helpers import CLUSTER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import Insider, frames, insider_of

from builder.pki import Pki
from tyd import codec
from tyd.errors import CodecError
from tyd.record import Freshness, RecordError, Verifier, load_trust


def verifier_of(pki: Pki) -> Verifier:
    return Verifier(
        load_trust(
            CLUSTER,
            pki.paths.ca_cert,
            pki.paths.crl,
            ipaddress.IPv4Network("127.0.0.0/24"),
            None,
            Freshness(5.0, 10.0),
        )
    )


def outcome(frame: bytes, verifier: Verifier) -> list[str]:
    """What the frame came to: its kind, then 'ok' or the refusal's reason per entry."""
    try:
        msg = codec.decode(frame)
    except CodecError:
        return ["malformed"]
    out = [msg.kind.name]
    for m in ((msg.sender,) if msg.sender else ()) + msg.members:
        try:
            verifier.verify(m)
            out.append("ok")
        except RecordError as exc:
            out.append(exc.reason)
    return out


@pytest.fixture(scope="module")
def parts(pki: Pki) -> tuple[Insider, Verifier]:
    return insider_of(pki), verifier_of(pki)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_any_frame_is_a_message_or_a_typed_refusal(
    parts: tuple[Insider, Verifier], data: st.DataObject
) -> None:
    insider, verifier = parts
    frame = data.draw(frames(insider))
    assert outcome(frame, verifier)  # no other exception escaped


def test_the_strategies_reach_past_the_codec(parts: tuple[Insider, Verifier]) -> None:
    """A fuzzer that only ever meets `malformed` tests nothing: some records must get as far
    as the certificate and signature checks."""
    from hypothesis import find

    insider, verifier = parts
    find(
        frames(insider),
        lambda f: "bad_cert" in outcome(f, verifier),
        settings=settings(
            max_examples=2000, database=None, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
