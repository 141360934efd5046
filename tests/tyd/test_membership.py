"""The cluster map with an injected clock: join, suspect, remove, merge, concurrent joins."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tyd.member import Member, State
from tyd.membership import Change, ChangeKind, ClusterMap, Timing

TIMING = Timing(suspect_after=3.0, remove_after=6.0, tombstone_after=18.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def member(i: int, inc: int = 1, hb: int = 0, state: State = State.ALIVE) -> Member:
    return Member(
        f"node{i:02d}", ipaddress.IPv4Address(f"10.99.0.{i}"), f"{i:02x}" * 32, state, inc, hb
    )


def new_map(i: int, clock: Clock) -> ClusterMap:
    return ClusterMap(member(i), TIMING, clock)


def kinds(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.kind.value, c.member.name) for c in changes]


def test_join_adds_once_and_runs_the_add_hook_once() -> None:
    clock = Clock()
    m = new_map(1, clock)
    assert kinds(m.merge([member(2)])) == [("add", "node02")]
    assert m.merge([member(2)]) == []  # same version: nothing new
    assert kinds(m.merge([member(2, hb=5)])) == []  # a heartbeat is not a new member
    assert m.live_names() == {"node01", "node02"}


def test_silence_makes_suspect_then_removes_and_heartbeats_prevent_it() -> None:
    clock = Clock()
    m = new_map(1, clock)
    m.merge([member(2), member(3)])
    for hb in range(1, 4):
        clock.now += 1.5
        m.merge([member(3, hb=hb)])  # node03 keeps beating, node02 is silent
    assert m.expire() == []
    states = {v.member.name: v.state for v in m.view()}
    assert states == {"node01": "alive", "node02": "suspect", "node03": "alive"}
    clock.now += 2.0
    m.merge([member(3, hb=9)])
    assert kinds(m.expire()) == [("remove", "node02")]
    assert m.live_names() == {"node01", "node03"}
    assert m.get("node02") is not None and m.get("node02").state is State.DEAD  # type: ignore


def test_suspect_recovers_when_heard_again() -> None:
    clock = Clock()
    m = new_map(1, clock)
    m.merge([member(2)])
    clock.now += 4.0
    m.expire()
    assert {v.member.name: v.state for v in m.view()}["node02"] == "suspect"
    m.merge([member(2, hb=1)])
    m.expire()
    assert {v.member.name: v.state for v in m.view()}["node02"] == "alive"


def test_tombstone_blocks_stale_gossip_then_is_purged() -> None:
    clock = Clock()
    m = new_map(1, clock)
    m.merge([member(2, hb=4)])
    clock.now += 7.0
    assert kinds(m.expire()) == [("remove", "node02")]
    assert m.merge([member(2, hb=4)]) == []  # a slower node's stale view cannot revive it
    clock.now += TIMING.tombstone_after
    m.expire()
    assert m.get("node02") is None


def test_a_falsely_removed_node_comes_back_with_a_newer_heartbeat() -> None:
    clock = Clock()
    m = new_map(1, clock)
    m.merge([member(2, hb=4)])
    clock.now += 7.0
    m.expire()
    assert kinds(m.merge([member(2, hb=5)])) == [("add", "node02")]


def test_leave_beats_every_live_view_of_the_same_run() -> None:
    clock = Clock()
    a, b = new_map(1, clock), new_map(2, clock)
    a.merge(b.members())
    b.merge(a.members())
    b.beat()
    left = b.leave()
    assert left.state is State.LEFT
    assert kinds(a.merge([left])) == [("remove", "node02")]
    assert a.merge([dataclasses.replace(left, state=State.ALIVE)]) == []
    restarted = member(2, inc=2)  # a new run (epoch) of node02 rejoins
    assert kinds(a.merge([restarted])) == [("add", "node02")]


def test_a_node_refutes_its_own_death() -> None:
    clock = Clock()
    a = new_map(1, clock)
    a.beat()
    rumour = dataclasses.replace(a.me, state=State.DEAD, heartbeat=7)
    a.merge([rumour])
    assert a.me.state is State.ALIVE and a.me.newer_than(rumour)
    future = dataclasses.replace(a.me, state=State.DEAD, incarnation=a.me.incarnation + 5)
    a.merge([future])
    assert a.me.newer_than(future)


def test_changed_certificate_in_a_new_epoch_replaces_the_member() -> None:
    clock = Clock()
    m = new_map(1, clock)
    m.merge([member(2)])
    rebuilt = dataclasses.replace(member(2, inc=2), fingerprint="ff" * 32)
    assert kinds(m.merge([rebuilt])) == [("remove", "node02"), ("add", "node02")]


def test_a_certificate_renewed_during_a_run_changes_no_hook() -> None:
    """Renewal (same run, same address, a newer record with a new certificate) must not tear
    down the peer's IKE_SA: no remove and add, the map holds the new fingerprint."""
    clock = Clock()
    m = new_map(1, clock)
    m.merge([member(2)])
    renewed = dataclasses.replace(member(2, hb=5), fingerprint="ee" * 32)
    assert kinds(m.merge([renewed])) == []
    assert m.get("node02").fingerprint == "ee" * 32


def test_map_size_is_bounded() -> None:
    clock = Clock()
    m = ClusterMap(member(1), TIMING, clock, max_members=10)
    m.merge([member(i) for i in range(2, 50)])
    assert len(m.members()) == 10 and m.overflow == 39


def test_concurrent_joins_through_different_philips_converge() -> None:
    """Three nodes join at once, each through a different member; gossip heals the rest."""
    clock = Clock()
    maps = {i: new_map(i, clock) for i in range(1, 7)}
    for i in (2, 3):  # an established 3-node cluster
        maps[1].merge(maps[i].members())
        maps[i].merge(maps[1].members())
    maps[2].merge(maps[3].members())
    maps[3].merge(maps[2].members())
    for joiner, philip in ((4, 1), (5, 2), (6, 3)):  # HELLO -> WELCOME, all at once
        maps[philip].merge([maps[joiner].me])
        maps[joiner].merge(maps[philip].members())
    rnd = random.Random(4)
    for _ in range(12):  # gossip rounds: push-pull with one random member each
        for i, mp in maps.items():
            peer = maps[rnd.choice([n for n in maps if n != i])]
            peer.merge(mp.members())
            mp.merge(peer.members())
    expected = {f"node{i:02d}" for i in maps}
    assert all(mp.live_names() == expected for mp in maps.values())


entries = st.builds(
    lambda i, inc, hb, s: member(i, inc, hb, s),
    st.integers(2, 6),
    st.integers(1, 3),
    st.integers(0, 3),
    st.sampled_from(State),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(entries, max_size=25), st.integers(0, 2**32))
def test_merge_order_does_not_matter(batch: list[Member], seed: int) -> None:
    rnd = random.Random(seed)
    clock = Clock()
    a, b = new_map(1, clock), new_map(1, clock)
    a.merge(batch)
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    for e in shuffled:
        b.merge([e])
    assert sorted(a.members(), key=str) == sorted(b.members(), key=str)


@settings(max_examples=150, deadline=None)
@given(st.lists(entries, max_size=25))
def test_add_and_remove_hooks_alternate_per_member(batch: list[Member]) -> None:
    clock = Clock()
    m = new_map(1, clock)
    live: set[str] = set()
    for e in batch:
        for c in m.merge([e]):
            if c.kind is ChangeKind.ADD:
                assert c.member.name not in live
                live.add(c.member.name)
            else:
                assert c.member.name in live
                live.discard(c.member.name)
    assert live | {"node01"} == m.live_names()


def test_judgements_stay_local_and_tombstones_expire_on_schedule() -> None:
    """Suspects and the dead are this node's own judgement: never gossiped. A member's own
    LEAVE travels until its tombstone expires; every tombstone is purged on time."""
    clock = Clock()
    m = new_map(1, clock)
    m.merge([member(2), member(3), member(4)])
    m.merge([member(4, hb=1, state=State.LEFT)])
    gossiped = lambda: {x.name for x in m.members()}  # noqa: E731
    assert gossiped() == {"node01", "node02", "node03", "node04"}  # node04: its LEAVE
    clock.now += TIMING.suspect_after
    m.merge([member(3, hb=1)])
    m.expire()
    assert gossiped() == {"node01", "node03", "node04"}  # node02 is suspect here
    clock.now += TIMING.remove_after - TIMING.suspect_after
    m.expire()
    assert {v.member.name: v.state for v in m.view()}["node02"] == "dead"
    assert "node02" not in gossiped()
    clock.now += TIMING.tombstone_after
    m.expire()
    assert m.get("node02") is None and m.get("node04") is None  # both tombstones purged
    assert gossiped() == {"node01"}  # node03 went silent too meanwhile
    # (an old entry of node02 replayed now is refused by its age: tyd.record, test_insider)


def test_hooks_settle_per_member() -> None:
    """A member's hooks (firewall element, IPsec connection) are applied before tyd talks to
    it (tyd.hooks.HookRunner.settled)."""
    import asyncio
    import ipaddress
    import logging

    from tyd.hooks import HookRunner
    from tyd.member import Member, State
    from tyd.membership import Change, ChangeKind

    class Slow:
        name = "slow"

        def __init__(self) -> None:
            self.gate = asyncio.Event()

        async def add(self, member: Member) -> None:
            await self.gate.wait()

        async def remove(self, member: Member) -> None:
            await self.gate.wait()

    async def scenario() -> None:
        hook = Slow()
        runner = HookRunner([hook], logging.getLogger("test"), lambda: None)
        m = Member("n1", ipaddress.IPv4Address("10.0.0.1"), "ab" * 32, State.ALIVE, 1, 0)
        task = asyncio.ensure_future(runner.run())
        assert runner.settled("n1")
        runner.submit(Change(ChangeKind.ADD, m))
        runner.submit(Change(ChangeKind.REMOVE, m))
        await asyncio.sleep(0)
        assert not runner.settled("n1") and runner.settled("n2")
        hook.gate.set()
        await runner.drain(5)
        assert runner.settled("n1")
        task.cancel()

    asyncio.run(scenario())
