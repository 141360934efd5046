"""Digest gossip, pure (tyd.gossip, the DIGEST/DELTA codec): summaries, deltas, bounds, and
convergence: whatever order deltas arrive in, every map ends the same."""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest
from convergence import EXCHANGES, agree, settle
from hypothesis import given, settings
from hypothesis import strategies as st

from tyd import codec, gossip
from tyd.codec import Have, Kind
from tyd.errors import CodecError
from tyd.member import Beat, Member, Proof, State
from tyd.membership import ClusterMap, Timing

TIMING = Timing(suspect_after=3.0, remove_after=6.0, tombstone_after=18.0)
CLUSTER = "chaos-lab"


def member(
    i: int, inc: int = 1, hb: int = 0, state: State = State.ALIVE, cert: bytes = b"C" * 40
) -> Member:
    m = Member(
        f"node{i:02d}", ipaddress.IPv4Address(f"10.99.0.{i}"), f"{i:02x}" * 32, state, inc, hb
    )
    body = codec.body_bytes(CLUSTER, m)
    signature = b"S%d.%d.%d.%s" % (i, inc, hb, state.value.encode())
    return dataclasses.replace(m, proof=Proof(CLUSTER, body, signature, cert))


def beat(i: int, count: int, inc: int = 1) -> Beat:
    return Beat(f"node{i:02d}", inc, count, 1000 * count, b"B" * 64)


def new_map(i: int) -> ClusterMap:
    return ClusterMap(member(i), TIMING, lambda: 100.0)


def state(m: ClusterMap) -> list[tuple[str, tuple[int, int], str, int]]:
    """Everything gossip decides: each member's record version and state, its newest beat."""
    return sorted(
        (v.member.name, v.member.version, v.state, (m.beat_of(v.member.name) or beat(0, 0)).count)
        for v in m.view()
    )


# -- summaries and deltas ---------------------------------------------------------------


def test_a_steady_peer_is_sent_nothing_and_a_change_sends_only_that_record() -> None:
    a, b = new_map(1), new_map(2)
    a.merge([member(i) for i in (2, 3, 4)])
    b.merge([member(i) for i in (1, 3, 4)])
    b.merge_beats([beat(3, 7)])
    a.merge_beats([beat(3, 7)])
    assert gossip.delta(b, gossip.summary(a)) == ((), ())
    b.merge([member(4, hb=1)])
    b.merge_beats([beat(3, 8)])
    records, beats = gossip.delta(b, gossip.summary(a))
    assert [(r.name, r.heartbeat) for r in records] == [("node04", 1)]
    assert [(x.name, x.count) for x in beats] == [("node03", 8)]


def test_certificates_travel_only_to_who_lacks_the_member_or_asks() -> None:
    a, b = new_map(1), new_map(2)
    b.merge([member(3), member(4)])
    a.merge([member(3, hb=0)])
    b.merge([member(3, hb=1)])
    records = {r.name: r for r in gossip.delta(b, gossip.summary(a))[0]}
    assert records["node04"].proof.cert  # type: ignore[union-attr]  # a lacks node04
    assert not records["node03"].proof.cert  # type: ignore[union-attr]  # a holds node03's
    asked = {r.name: r for r in gossip.delta(b, gossip.summary(a, frozenset({"node03"})))[0]}
    assert asked["node03"].proof.cert  # type: ignore[union-attr]  # rev "-": send it


def test_a_new_incarnation_sends_its_beat_even_with_a_lower_count() -> None:
    a, b = new_map(1), new_map(2)
    for mp in (a, b):
        mp.merge([member(3)])
        mp.merge_beats([beat(3, 500)])
    b.merge([member(3, inc=2)])
    b.merge_beats([beat(3, 1, inc=2)])
    records, beats = gossip.delta(b, gossip.summary(a))
    a.merge(records)
    a.merge_beats(beats)
    assert a.beat_of("node03") == beat(3, 1, inc=2)


def test_beats_of_another_incarnation_or_not_newer_are_not_news() -> None:
    a = new_map(1)
    a.merge([member(3)])
    assert not a.beat_is_news(beat(3, 1, inc=2))
    assert not a.beat_is_news(beat(9, 1))  # unknown member
    a.merge_beats([beat(3, 5)])
    assert not a.beat_is_news(beat(3, 5)) and not a.beat_is_news(beat(3, 4))
    assert a.beat_is_news(beat(3, 6))


def test_a_beat_is_hearing_from_its_member() -> None:
    now = [100.0]
    a = ClusterMap(member(1), TIMING, lambda: now[0])
    a.merge([member(2), member(3)])
    for count in range(1, 5):
        now[0] += 2.0
        a.merge_beats([beat(3, count)])
        a.expire()
    states = {v.member.name: v.state for v in a.view()}
    assert states["node03"] == "alive" and states["node02"] == "dead"


# -- the codec --------------------------------------------------------------------------


def test_digest_and_delta_round_trip_and_records_go_lean() -> None:
    have = (Have("node02", "0123abcd", 7), Have("node03", "-", 0))
    msg = codec.digest(CLUSTER, member(1), beat(1, 3), have)
    back = codec.decode(codec.encode(msg))
    assert back.kind is Kind.DIGEST and back.have == have and back.beat == beat(1, 3)
    assert back.sender == member(1) and back.sender.proof.cert == b""  # type: ignore[union-attr]
    lean = dataclasses.replace(
        member(2),
        proof=dataclasses.replace(
            member(2).proof,  # type: ignore[type-var]
            cert=b"",
        ),
    )
    reply = codec.decode(codec.encode(codec.delta((member(3), lean), (beat(3, 9),))))
    assert [r.proof.cert for r in reply.members] == [b"C" * 40, b""]  # type: ignore[union-attr]
    assert reply.beats == (beat(3, 9),) and reply.beats[0].signature == b"B" * 64


def _frame(kind: Kind, body: object) -> bytes:
    payload = json.dumps(body).encode()
    return codec.HEADER.pack(codec.MAGIC, codec.VERSION, kind, len(payload)) + payload


def _digest_body(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "cluster": CLUSTER,
        "sender": codec.member_to_wire(member(1), cert=False),
        "beat": codec.beat_to_wire(beat(1, 1)),
        "have": "node02:0123abcd:1",
    }
    body.update(over)
    return body


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("have not name:rev:beat", _digest_body(have="node02:0123abcd")),
        ("have with a bad rev", _digest_body(have="node02:XYZ:1")),
        ("have with a negative beat", _digest_body(have="node02:0123abcd:-1")),
        ("have with a 20-digit beat", _digest_body(have="node02:0123abcd:" + "9" * 20)),
        ("have naming a member twice", _digest_body(have="node02:0123abcd:1 node02:-:2")),
        ("have too long", _digest_body(have="a:-:1 " * 40000)),
        ("have not a string", _digest_body(have=["node02", "0123abcd", 1])),
        ("beat with 4 fields", _digest_body(beat=["node01", 1, 1, 1])),
        ("beat with a float", _digest_body(beat=["node01", 1, 1.5, 1, "QUFB"])),
        ("beat signature too long", _digest_body(beat=["node01", 1, 1, 1, "QUFB" * 40])),
        ("no beat", {k: v for k, v in _digest_body().items() if k != "beat"}),
    ],
)
def test_malformed_digests_are_codec_errors(what: str, body: object) -> None:
    with pytest.raises(CodecError):
        codec.decode(_frame(Kind.DIGEST, body))


def test_lean_records_are_refused_outside_digest_gossip() -> None:
    lean = codec.member_to_wire(member(2), cert=False)
    sync = {"cluster": CLUSTER, "sender": codec.member_to_wire(member(1)), "members": [lean]}
    with pytest.raises(CodecError, match="expected keys"):
        codec.decode(_frame(Kind.SYNC, sync))
    with pytest.raises(CodecError, match="duplicate names"):
        codec.decode(
            _frame(
                Kind.DELTA,
                {
                    "records": [],
                    "want": "",
                    "beats": [codec.beat_to_wire(beat(2, 1)), codec.beat_to_wire(beat(2, 2))],
                },
            )
        )
    with pytest.raises(CodecError, match="at most"):
        codec.decode(
            _frame(
                Kind.DELTA,
                {
                    "records": [],
                    "want": "",
                    "beats": [codec.beat_to_wire(beat(2, 1))] * (codec.MAX_MEMBERS + 1),
                },
            )
        )


# -- convergence ------------------------------------------------------------------------

UPDATES = st.lists(
    st.tuples(
        st.integers(2, 7),
        st.integers(1, 3),
        st.integers(0, 4),
        st.sampled_from([State.ALIVE, State.LEFT]),
        st.integers(0, 9),
    ),
    min_size=1,
    max_size=30,
)


def _deltas(
    updates: list[tuple[int, int, int, State, int]],
) -> list[tuple[tuple[Member, ...], tuple[Beat, ...]]]:
    """Each update lands on one source map; each source then answers an empty summary."""
    sources = [new_map(10 + k) for k in range(3)]
    for k, (i, inc, hb, st_, count) in enumerate(updates):
        src = sources[k % 3]
        src.merge([member(i, inc, hb, st_)])
        src.merge_beats([beat(i, count, inc)])
    return [gossip.delta(src, gossip.summary(new_map(1))) for src in sources]


@settings(max_examples=150, deadline=None)
@given(UPDATES, st.randoms(use_true_random=False))
def test_any_order_of_deltas_converges_to_the_same_map(
    updates: list[tuple[int, int, int, State, int]], rnd: object
) -> None:
    deltas = _deltas(updates)
    pieces = [(k, item) for k, (records, beats) in enumerate(deltas) for item in (*records, *beats)]
    reference = new_map(1)
    for delta in deltas:
        reference.merge(delta[0])
    for delta in deltas:
        reference.merge_beats(delta[1])
    for _ in range(3):
        rnd.shuffle(pieces)  # type: ignore[attr-defined]
        m = new_map(1)
        for _ in range(2):  # a beat that came before its record is sent again next round
            for _, item in pieces:
                if isinstance(item, Beat):
                    m.merge_beats([item])
                else:
                    m.merge([item])
        assert state(m) == state(reference)


@settings(max_examples=100, deadline=None)
@given(UPDATES, EXCHANGES)
def test_pulls_in_any_order_end_in_one_map_everywhere(
    updates: list[tuple[int, int, int, State, int]], pulls: list[tuple[int, int]]
) -> None:
    maps = [new_map(1), new_map(20), new_map(21), new_map(22)]
    for k, (i, inc, hb, st_, count) in enumerate(updates):
        maps[k % 4].merge([member(i, inc, hb, st_)])
        maps[k % 4].merge_beats([beat(i, count, inc)])

    def pull(a: ClusterMap, b: ClusterMap) -> None:
        records, beats = gossip.delta(b, gossip.summary(a))
        a.merge(records)
        a.merge_beats(beats)

    settle(maps, pulls, pull)
    assert agree(maps, state)


def test_a_member_judged_dead_comes_back_only_with_a_beat_from_after_its_silence() -> None:
    now = [100.0]
    a = ClusterMap(member(1), TIMING, lambda: now[0])
    a.merge([member(3)])
    a.merge_beats([Beat("node03", 1, 5, 50_000, b"B")])
    now[0] += 7.0
    assert [c.kind.value for c in a.expire()] == ["remove"]
    # a late copy of a beat it signed 2 s later: no news of life after the silence
    assert a.merge_beats([Beat("node03", 1, 6, 52_000, b"B")]) == []
    assert a.live_names() == {"node01"}
    # a beat it signed 8 s later (remove_after is 6 s): it is alive
    back = a.merge_beats([Beat("node03", 1, 9, 58_000, b"B")])
    assert [(c.kind.value, c.member.name) for c in back] == [("add", "node03")]
    assert a.live_names() == {"node01", "node03"}


def test_push_back_sends_what_the_server_wanted_and_no_more() -> None:
    server, asker = new_map(1), new_map(2)
    for mp in (server, asker):
        mp.merge([member(3), member(4)])
        mp.merge_beats([beat(3, 1), beat(4, 1)])
    asker.merge([member(4, hb=1), member(5)])  # a newer record, a member the server lacks
    asker.merge_beats([beat(3, 2), beat(5, 1)])  # only a newer beat of node03
    server.merge([asker.me])  # as its DIGEST's sender
    want = gossip.wanted(server, gossip.summary(asker), "node02")
    assert sorted(want) == ["node03.", "node04", "node05+"]
    records, beats = gossip.pushed(asker, want, set())
    assert {(r.name, bool(r.proof.cert)) for r in records} == {  # type: ignore[union-attr]
        ("node04", False),
        ("node05", True),
    }
    assert {(b.name, b.count) for b in beats} == {("node03", 2), ("node04", 1), ("node05", 1)}
    server.merge(records)
    server.merge_beats(beats)
    assert gossip.wanted(server, gossip.summary(asker), "node02") == ()
    # a record the server itself just sent is not pushed back
    assert gossip.pushed(asker, ("node04",), {"node04"})[0] == ()
