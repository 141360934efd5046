"""Self-certifying records: what a member signs verifies everywhere, and nothing else does.
Property tests over the signature, the codec and the merge; one test per refusal reason."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import ipaddress
import random
from pathlib import Path

import pytest
from helpers import CLUSTER, NOW, address, make_pki, name
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.model import KeyType
from builder.pki import Identity, Pki
from tyd import codec
from tyd.errors import CodecError
from tyd.member import Member, State
from tyd.membership import ClusterMap, Timing
from tyd.record import Freshness, RecordError, Signer, Trust, Verifier, load_trust
from tyd.tls import pem_cert_der

T0 = NOW.timestamp() + 60  # the wall clock of these tests: a minute after the PKI was made
SUBNET = ipaddress.IPv4Network("127.0.0.0/24")
FRESH = Freshness(skew_seconds=30, remove_after_seconds=30)  # max age 90 s, tombstone 120 s
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tpki is module-scoped: never reset


@pytest.fixture(scope="module", params=[KeyType.ED25519, KeyType.ECDSA_P256])
def tpki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Four nodes; node04 revoked (its key kept aside as the member would)."""
    key_type = request.param
    root = tmp_path_factory.mktemp(f"rec-{key_type.value}")
    pki = Pki(root / "pki", key_type)
    pki.init_ca(CLUSTER, NOW, 30)
    for i in range(1, 5):
        pki.issue(
            Identity(name(i), f"{name(i)}.lab.example", ipaddress.IPv4Address(address(i))),
            CLUSTER,
            NOW,
            30,
        )
    (root / "node04.key").write_bytes(pki.paths.node_key(name(4)).read_bytes())
    (root / "node04.pem").write_bytes(pki.paths.node_cert(name(4)).read_bytes())
    pki.revoke(name(4), NOW, 30)
    return pki


def signer(pki: Pki, i: int, wall: float = T0) -> Signer:
    if i == 4:
        root = pki.paths.root.parent
        return Signer(CLUSTER, root / "node04.key", pem_cert_der(root / "node04.pem"), lambda: wall)
    return Signer(
        CLUSTER,
        pki.paths.node_key(name(i)),
        pem_cert_der(pki.paths.node_cert(name(i))),
        lambda: wall,
    )


def trust(pki: Pki, **changes: object) -> Trust:
    t = load_trust(CLUSTER, pki.paths.ca_cert, pki.paths.crl, SUBNET, None, FRESH)
    return dataclasses.replace(t, **changes)  # type: ignore[arg-type]


def verifier(pki: Pki, wall: float = T0, **changes: object) -> Verifier:
    return Verifier(trust(pki, **changes), lambda: wall)


def entry(
    i: int, inc: int = int(T0 * 1000) - 5000, hb: int = 1, state: State = State.ALIVE
) -> Member:
    return Member(name(i), ipaddress.IPv4Address(address(i)), "", state, inc, hb)


def over_the_wire(m: Member) -> Member:
    return codec.member_from_wire(codec.member_to_wire(m))


entries = st.builds(
    entry,
    st.integers(1, 3),
    st.integers(0, int(T0 * 1000)),
    st.integers(0, codec.MAX_INT),
    st.sampled_from([State.ALIVE, State.LEFT]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(entries)
def test_what_a_member_signs_verifies_after_the_wire(tpki: Pki, m: Member) -> None:
    signed = signer(tpki, int(m.name[-2:]))(m)
    got = verifier(tpki).verify(over_the_wire(signed))
    assert got == signed and got.proof == signed.proof
    assert got.fingerprint == signer(tpki, int(m.name[-2:])).fingerprint


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(entries, st.sampled_from(["rec", "sig"]), st.integers(0, 10_000), st.integers(1, 255))
def test_any_changed_byte_is_refused(tpki: Pki, m: Member, part: str, pos: int, xor: int) -> None:
    wire = codec.member_to_wire(signer(tpki, int(m.name[-2:]))(m))
    raw = bytearray(base64.b64decode(wire[part]))
    raw[pos % len(raw)] ^= xor
    wire[part] = base64.b64encode(bytes(raw)).decode()
    try:
        claim = codec.member_from_wire(wire)
    except CodecError:
        return  # no longer even well-formed
    with pytest.raises(RecordError):
        verifier(tpki).verify(claim)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.lists(entries, min_size=1, max_size=12), st.randoms())
def test_maps_fed_the_same_verified_records_in_any_order_agree(
    tpki: Pki, batch: list[Member], rnd: random.Random
) -> None:
    v = verifier(tpki)
    records = [v.verify(over_the_wire(signer(tpki, int(m.name[-2:]))(m))) for m in batch]
    timing = Timing(3, 6, 18)
    maps = []
    for order in (records, rnd.sample(records, len(records))):
        cmap = ClusterMap(entry(9), timing, lambda: 100.0)
        for r in order:
            if cmap.is_news(r):
                cmap.merge([r])
        maps.append(sorted((m.name, m.version, m.state) for m in cmap.members()[1:]))
    assert maps[0] == maps[1]


def test_one_refusal_reason_each(tpki: Pki, tmp_path: Path) -> None:
    s1 = signer(tpki, 1)
    good = over_the_wire(s1(entry(1)))
    v = verifier(tpki)
    assert v.verify(good) is good

    def reason(claim: Member, ver: Verifier = v) -> str:
        with pytest.raises(RecordError) as err:
            ver.verify(claim)
        return err.value.reason

    assert reason(dataclasses.replace(good, proof=None)) == "unsigned"
    other = Signer(
        "other-lab",
        tpki.paths.node_key(name(1)),
        pem_cert_der(tpki.paths.node_cert(name(1))),
        lambda: T0,
    )
    assert reason(over_the_wire(other(entry(1)))) == "other_cluster"
    assert (
        reason(good, verifier(tpki, subnet=ipaddress.IPv4Network("10.0.0.0/8"))) == "outside_subnet"
    )
    roster = {name(1): ipaddress.IPv4Address(address(2))}
    assert reason(good, verifier(tpki, roster=roster)) == "not_in_roster"
    assert reason(good, verifier(tpki, roster={})) == "not_in_roster"
    # node01's key and certificate cannot speak for node02, nor move node01
    assert reason(over_the_wire(s1(entry(2)))) == "cert_mismatch"
    moved = dataclasses.replace(entry(1), address=ipaddress.IPv4Address(address(3)))
    assert reason(over_the_wire(s1(moved))) == "cert_mismatch"
    # node02's certificate with node01's signature
    s2 = signer(tpki, 2)
    stolen = over_the_wire(s2(entry(2)))
    body = codec.body_bytes(CLUSTER, dataclasses.replace(stolen, heartbeat=99))
    forged = dataclasses.replace(
        stolen,
        heartbeat=99,
        proof=dataclasses.replace(stolen.proof, body=body, signature=s1(entry(1)).proof.signature),
    )  # type: ignore[union-attr]
    assert reason(over_the_wire(forged)) == "bad_signature"
    # a certificate of another CA with the same names
    foreign = make_pki(tmp_path / "foreign", 1)
    fs = Signer(
        CLUSTER,
        foreign.paths.node_key(name(1)),
        pem_cert_der(foreign.paths.node_cert(name(1))),
        lambda: T0,
    )
    assert reason(over_the_wire(fs(entry(1)))) == "bad_cert"
    # revoked, expired, stale, from the future, an epoch from the future
    assert reason(over_the_wire(signer(tpki, 4)(entry(4)))) == "revoked"
    late = NOW + dt.timedelta(days=31)
    assert (
        reason(
            over_the_wire(signer(tpki, 1, late.timestamp())(entry(1))),
            verifier(tpki, late.timestamp()),
        )
        == "expired"
    )
    assert reason(good, verifier(tpki, T0 + 91)) == "stale"
    assert reason(over_the_wire(signer(tpki, 1, T0 + 31)(entry(1)))) == "future"
    assert reason(over_the_wire(s1(entry(1, inc=int((T0 + 31) * 1000))))) == "future_epoch"
    assert verifier(tpki, T0 + 89).verify(good) is good  # within max age: fine


def test_a_crl_not_signed_by_the_cluster_ca_is_not_trusted(tpki: Pki, tmp_path: Path) -> None:
    from tyd.errors import TydError

    foreign = make_pki(tmp_path / "foreign", 0)
    with pytest.raises(TydError, match="not signed by the cluster CA"):
        load_trust(CLUSTER, tpki.paths.ca_cert, foreign.paths.crl, SUBNET, None, FRESH)


# -- heartbeats (digest gossip) ----------------------------------------------------------


def test_a_heartbeat_verifies_with_its_members_record_and_nothing_else(tpki: Pki) -> None:
    v = verifier(tpki)
    rec = v.verify(signer(tpki, 3)(entry(3)))
    good = signer(tpki, 3).beat(rec, 7)
    assert v.verify_beat(good, rec) == good
    # an insider (node02) signs a heartbeat for node03: not node03's key
    forged = dataclasses.replace(signer(tpki, 2).beat(rec, 8), name=name(3))
    with pytest.raises(RecordError, match="bad_signature"):
        v.verify_beat(forged, rec)
    # node03's real heartbeat with its count raised: the bytes it signed differ
    with pytest.raises(RecordError, match="bad_signature"):
        v.verify_beat(dataclasses.replace(good, count=10_000), rec)
    # a heartbeat of another incarnation, or against another member's record
    with pytest.raises(RecordError, match="beat_mismatch"):
        v.verify_beat(dataclasses.replace(good, incarnation=rec.incarnation + 1), rec)
    with pytest.raises(RecordError, match="beat_mismatch"):
        v.verify_beat(good, v.verify(signer(tpki, 1)(entry(1))))
    # a record signature is no heartbeat signature (domains differ)
    body_sig = rec.proof.signature  # type: ignore[union-attr]
    with pytest.raises(RecordError, match="bad_signature"):
        v.verify_beat(dataclasses.replace(good, signature=body_sig), rec)


def test_heartbeats_are_fresh_or_refused(tpki: Pki) -> None:
    rec = verifier(tpki).verify(signer(tpki, 3)(entry(3)))
    old = signer(tpki, 3, wall=T0 - 91).beat(rec, 1)  # max age 90 s
    with pytest.raises(RecordError, match="stale"):
        verifier(tpki).verify_beat(old, rec)
    early = signer(tpki, 3, wall=T0 + 31).beat(rec, 2)  # skew 30 s
    with pytest.raises(RecordError, match="future"):
        verifier(tpki).verify_beat(early, rec)
    later = verifier(tpki, wall=T0 + 60)
    assert later.verify_beat(signer(tpki, 3, wall=T0 + 59).beat(rec, 3), rec).count == 3
