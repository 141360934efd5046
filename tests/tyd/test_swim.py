"""Swim gossip, pure (tyd.swim, the PROBE/ACK/SWAP/GIVE codec, accusations in the map):
bucket digests of constant size, only differing buckets compared, bounds, convergence in
any order of probes, and a suspected live member refutes and stays."""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest
from convergence import EXCHANGES, agree, settle
from hypothesis import given, settings
from hypothesis import strategies as st

from tyd import codec, swim
from tyd.codec import BUCKETS, Have, Kind
from tyd.errors import CodecError
from tyd.member import Accusation, Member, Proof, State
from tyd.membership import ClusterMap, Timing

TIMING = Timing(3.0, 6.0, 18.0, suspicion_after=6.0, round_seconds=1.0)
CLUSTER = "chaos-lab"


def member(
    i: int, inc: int = 1, hb: int = 0, state: State = State.ALIVE, cert: bytes = b"C" * 40
) -> Member:
    m = Member(
        f"n{i:04d}",
        ipaddress.IPv4Address(f"10.99.{i // 250}.{i % 250 + 1}"),
        f"{i % 256:02x}" * 32,
        state,
        inc,
        hb,
    )
    body = codec.body_bytes(CLUSTER, m)
    signature = b"S%d.%d.%d.%s" % (i, inc, hb, state.value.encode())
    return dataclasses.replace(m, proof=Proof(CLUSTER, body, signature, cert))


def accuse(target: Member, by: int) -> Accusation:
    return Accusation(
        target.name, target.incarnation, target.heartbeat, f"n{by:04d}", 1, b"A%d" % by
    )


def new_map(i: int, now: list[float] | None = None) -> ClusterMap:
    clock = now or [100.0]
    return ClusterMap(member(i), TIMING, lambda: clock[0], sign=_bump_sign)


def _bump_sign(m: Member) -> Member:
    """What the member's Signer does, without keys: a fresh proof over the new version."""
    if m.proof is None or json.loads(m.proof.body)["hb"] != m.heartbeat:
        i = int(m.name[1:])
        return dataclasses.replace(m, proof=member(i, m.incarnation, m.heartbeat, m.state).proof)
    return m


def probe(asker: ClusterMap, answerer: ClusterMap) -> int:
    """One PROBE exchange, both sides pure: returns the records and accusations moved."""
    which = swim.diff(swim.buckets(answerer), swim.buckets(asker))
    if not which:
        return 0
    have = swim.summary(answerer, which)
    records, accusations = swim.delta(asker, have, which, answerer.me.name)
    answerer.merge(r for r in records if r.name != answerer.me.name)
    answerer.merge_accusations(accusations)
    back, back_acc = swim.given(
        answerer, swim.wanted(asker, have), swim.echoes(answerer, records), asker.me.name
    )
    asker.merge(back)
    asker.merge_accusations(back_acc)
    return len(records) + len(accusations) + len(back) + len(back_acc)


def state(m: ClusterMap) -> list[tuple[str, tuple[int, int], str, str]]:
    return sorted(
        (
            v.member.name,
            v.member.version,
            v.state,
            (a.accuser if (a := m.accusation_of(v.member.name)) else ""),
        )
        for v in m.view()
    )


# -- digests ------------------------------------------------------------------------------


def test_a_probe_is_the_same_size_at_10_and_at_2000_members() -> None:
    sizes = []
    for n in (10, 2000):
        m = new_map(0)
        m.merge(member(i) for i in range(1, n))
        sizes.append(len(codec.encode(codec.probe(CLUSTER, m.me, swim.buckets(m)))))
    assert sizes[0] == sizes[1] < 1000


def test_equal_maps_compare_nothing_and_one_change_is_one_bucket_and_one_record() -> None:
    a, b = new_map(1), new_map(2)
    a.merge(member(i) for i in range(2, 400))
    b.merge(member(i) for i in (1, *range(3, 400)))
    assert swim.diff(swim.buckets(a), swim.buckets(b)) == ()
    assert probe(a, b) == 0
    b.merge([member(77, hb=1)])
    which = swim.diff(swim.buckets(a), swim.buckets(b))
    assert which == (swim.bucket_of("n0077"),)
    have = swim.summary(b, which)
    assert len(have) < 40  # that bucket only, not the map
    records, accusations = swim.delta(a, have, which, "n0002")
    assert [r.name for r in records] == ["n0077"] and accusations == ()
    assert swim.wanted(a, have) == ("n0077",)
    assert probe(a, b) == 2  # a's older copy goes over, b's newer one comes back
    assert swim.buckets(a) == swim.buckets(b)


def test_a_restamped_record_is_no_news_and_changes_no_digest() -> None:
    a = new_map(1)
    a.merge([member(2)])
    before = swim.buckets(a)
    a.freshen(dataclasses.replace(member(2), stamp=5))
    assert swim.buckets(a) == before and a.get("n0002").stamp == 5  # type: ignore[union-attr]
    assert not a.is_news(dataclasses.replace(member(2), stamp=9))


def test_digests_are_cached_per_entry_yet_every_accusation_byte_counts() -> None:
    """Entries are hashed once (swim._entry); the cache key holds the accusation's signature,
    which Accusation's own equality ignores: two that differ only there still differ."""
    plain, a, b = new_map(1), new_map(1), new_map(1)
    for m in (plain, a, b):
        m.merge([member(3)])
    a.merge_accusations([accuse(member(3), by=4)])
    b.merge_accusations([dataclasses.replace(accuse(member(3), by=4), signature=b"other")])
    assert len({swim.buckets(plain), swim.buckets(a), swim.buckets(b)}) == 3
    assert swim.buckets(a) == swim.buckets(a) and swim.rev(a, member(3)) != swim.rev(b, member(3))


def test_certificates_travel_only_to_who_lacks_the_member() -> None:
    a, b = new_map(1), new_map(2)
    a.merge([member(3), member(4, hb=1)])
    b.merge([member(4)])
    which = swim.diff(swim.buckets(a), swim.buckets(b))
    records = {r.name: r for r in swim.delta(a, swim.summary(b, which), which, "n0002")[0]}
    assert records["n0003"].proof.cert  # type: ignore[union-attr]  # b lacks n0003
    assert not records["n0004"].proof.cert  # type: ignore[union-attr]  # b holds its cert
    assert "n0001" in records and "n0002" not in records  # never b's own record


# -- accusations --------------------------------------------------------------------------


def test_a_suspected_live_member_refutes_and_stays() -> None:
    now = [100.0]
    a, x, c = new_map(1, now), new_map(3, now), new_map(4, now)
    for m, others in ((a, (3, 4)), (x, (1, 4)), (c, (1, 3))):
        m.merge(member(i) for i in others)
    a.merge_accusations([accuse(member(3), by=1)])  # a liar, or a lost packet
    assert [v.state for v in a.view() if v.member.name == "n0003"] == ["suspect"]
    probe(c, a)  # the accusation spreads as a change
    assert c.accusation_of("n0003") is not None
    probe(x, c)  # and reaches the accused, who refutes with a newer record
    assert x.refuted == 1 and x.me.heartbeat == 1
    for _ in range(2):
        probe(c, x)
        probe(a, c)
    now[0] += 60.0
    for m in (a, c):
        assert m.expire() == []
        assert "n0003" in m.live_names() and m.accusation_of("n0003") is None
        assert m.get("n0003").heartbeat == 1  # type: ignore[union-attr]


def test_an_accused_member_that_does_not_refute_is_removed_after_the_suspicion_time() -> None:
    now = [100.0]
    a = new_map(1, now)
    a.merge([member(3), member(4)])
    now[0] += 1000.0  # silence alone removes nobody: liveness is by probe
    assert a.expire() == [] and a.live_names() == {"n0001", "n0003", "n0004"}
    a.merge_accusations([accuse(member(3), by=4)])
    now[0] += a.suspicion_seconds() - 0.5
    assert a.expire() == []
    now[0] += 1.0
    assert [(c.kind.value, c.member.name) for c in a.expire()] == [("remove", "n0003")]
    assert a.live_names() == {"n0001", "n0004"}
    # a newer record of its own (it was alive after all) brings it back
    assert [c.kind.value for c in a.merge([member(3, hb=1)])] == ["add"]


def test_an_accusation_of_an_older_record_or_a_left_member_is_no_news() -> None:
    a = new_map(1)
    a.merge([member(3, hb=2), member(5, state=State.LEFT)])
    assert not a.accusation_is_news(accuse(member(3, hb=1), by=4))
    assert not a.accusation_is_news(accuse(member(5), by=4))
    assert not a.accusation_is_news(accuse(member(9), by=4))  # unknown
    assert a.accusation_is_news(accuse(member(3, hb=2), by=4))
    a.merge_accusations([accuse(member(3, hb=2), by=4)])
    assert not a.accusation_is_news(accuse(member(3, hb=2), by=6))  # one at a time
    assert not a.accusation_is_news(accuse(member(1, hb=5), by=4))  # not our record


def test_the_suspicion_time_grows_with_log_n() -> None:
    small, big = new_map(0), new_map(0)
    small.merge(member(i) for i in range(1, 10))
    big.merge(member(i) for i in range(1, 2000))
    assert small.suspicion_seconds() == TIMING.suspicion_after
    assert 13.0 < big.suspicion_seconds() < 14.0  # 4 log10(2000) rounds of 1 s


# -- the codec ------------------------------------------------------------------------------


def test_the_swim_messages_round_trip() -> None:
    m = new_map(1)
    m.merge([member(2)])
    buckets = swim.buckets(m)
    back = codec.decode(codec.encode(codec.probe(CLUSTER, m.me, buckets)))
    assert back.kind is Kind.PROBE and back.buckets == buckets and back.sender == member(1)
    assert back.sender.proof.cert == b""  # type: ignore[union-attr]  # TLS carried it
    have = (Have("n0002", "0123abcd", 0), Have("n0003", "-", 0))
    assert codec.decode(codec.encode(codec.ack((3, 7), have))).have == have
    acc = accuse(member(2), by=1)
    swapped = codec.decode(codec.encode(codec.swap((member(2),), (acc,), ("n0003+",))))
    assert swapped.accusations == (acc,) and swapped.accusations[0].signature == b"A1"
    assert swapped.want == ("n0003+",) and swapped.members == (member(2),)
    assert codec.decode(codec.encode(codec.give((), (acc,)))).accusations == (acc,)
    req = codec.decode(codec.encode(codec.probe_req(CLUSTER, m.me, "n0002")))
    assert req.kind is Kind.PROBE_REQ and req.target == "n0002"
    assert codec.decode(codec.encode(codec.probed(True))).ok is True


def _frame(kind: Kind, body: object) -> bytes:
    payload = json.dumps(body).encode()
    return codec.HEADER.pack(codec.MAGIC, codec.VERSION, kind, len(payload)) + payload


def _probe_body(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "cluster": CLUSTER,
        "sender": codec.member_to_wire(member(1), cert=False),
        "buckets": " ".join(["0" * 16] * BUCKETS),
    }
    body.update(over)
    return body


ACC = codec.accusation_to_wire(accuse(member(2), by=1))


@pytest.mark.parametrize(
    ("kind", "what", "body"),
    [
        (Kind.PROBE, "one bucket too few", _probe_body(buckets=" ".join(["0" * 16] * 31))),
        (Kind.PROBE, "one bucket too many", _probe_body(buckets=" ".join(["0" * 16] * 33))),
        (Kind.PROBE, "a bucket not hex", _probe_body(buckets=" ".join(["g" * 16] * BUCKETS))),
        (Kind.PROBE, "buckets not a string", _probe_body(buckets=["0" * 16] * BUCKETS)),
        (Kind.PROBE, "no buckets", {k: v for k, v in _probe_body().items() if k != "buckets"}),
        (Kind.ACK, "diff out of range", {"diff": [BUCKETS], "have": ""}),
        (Kind.ACK, "diff twice", {"diff": [1, 1], "have": ""}),
        (Kind.ACK, "diff too long", {"diff": list(range(BUCKETS)) + [0], "have": ""}),
        (Kind.ACK, "diff not integers", {"diff": ["1"], "have": ""}),
        (
            Kind.SWAP,
            "accusation with 5 fields",
            {"records": [], "accusations": [ACC[:5]], "want": ""},
        ),
        (
            Kind.SWAP,
            "accusation of a bad name",
            {"records": [], "accusations": [["X!", *ACC[1:]]], "want": ""},
        ),
        (Kind.SWAP, "two of one target", {"records": [], "accusations": [ACC, ACC], "want": ""}),
        (
            Kind.SWAP,
            "signature too long",
            {"records": [], "accusations": [[*ACC[:5], "QUFB" * 40]], "want": ""},
        ),
        (Kind.GIVE, "too many", {"records": [], "accusations": [ACC] * (codec.MAX_MEMBERS + 1)}),
        (Kind.GIVE, "no accusations", {"records": []}),
        (Kind.PROBED, "ok not a boolean", {"ok": 1}),
        (
            Kind.PROBE_REQ,
            "target not a name",
            {
                "cluster": CLUSTER,
                "sender": codec.member_to_wire(member(1), cert=False),
                "target": "../x",
            },
        ),
    ],
)
def test_malformed_swim_messages_are_codec_errors(kind: Kind, what: str, body: object) -> None:
    with pytest.raises(CodecError):
        codec.decode(_frame(kind, body))


# -- convergence ------------------------------------------------------------------------------

UPDATES = st.lists(
    st.tuples(
        st.integers(2, 9),  # member
        st.integers(1, 3),  # incarnation
        st.integers(0, 4),  # heartbeat
        st.sampled_from([State.ALIVE, State.LEFT]),
        st.integers(0, 12),  # an accuser (0: none)
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(UPDATES, EXCHANGES)
def test_probes_in_any_order_end_in_one_map_everywhere(
    updates: list[tuple[int, int, int, State, int]], probes: list[tuple[int, int]]
) -> None:
    maps = [new_map(20), new_map(21), new_map(22), new_map(23)]
    for k, (i, inc, hb, st_, accuser) in enumerate(updates):
        m = maps[k % 4]
        m.merge([member(i, inc, hb, st_)])
        if accuser:
            m.merge_accusations([accuse(member(i, inc, hb), by=accuser)])
    settle(maps, probes, probe)
    assert agree(maps, state)
    assert all(swim.buckets(m) == swim.buckets(maps[0]) for m in maps)
