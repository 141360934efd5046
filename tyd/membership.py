"""The cluster map: who is in, who is suspect, who left. Pure state; the clock is passed in.

Merging is a last-writer-wins join on (incarnation, heartbeat) per node, with the more
final state winning ties, so any two maps merged in any order converge. Every entry that
reaches `merge` was signed by its own member (tyd.record verified it): only X advances X's
version. Liveness is by own observation: a member whose signed heartbeat has not advanced
for `suspect_after` seconds is suspect, after `remove_after` this node removes it (a local
`dead` tombstone that never travels: nobody can declare another node dead). A member that
leaves signs a `left` entry, which does travel. Tombstones are purged `tombstone_after`
seconds after they began, and are not gossiped then or ever after.

With digest gossip a member re-signs its record only when it changes or before it grows
stale, and proves it is alive with heartbeats (tyd.member.Beat): a newer verified beat of
the member's current incarnation counts as hearing from it, exactly as a newer record.

With swim gossip (Timing.suspicion_after set) silence removes nobody: members are probed,
and one whose probes failed, directly and through others, is accused (tyd.member.Accusation,
signed by its accuser). An accusation of a member's current record makes it suspect here and
travels with the record; `suspicion_seconds` later the member is removed (locally, `dead`),
unless a newer record of its own has refuted the accusation. An accusation of ourselves is
refuted at once: we sign a newer record, which supersedes it everywhere. So a liar can make
a live member suspect for a moment, never remove it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .codec import MAX_MEMBERS
from .member import Accusation, Beat, Member, State

Clock = Callable[[], float]


class ChangeKind(enum.Enum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class Change:
    """A member entered or left the live set: what the hooks act on."""

    kind: ChangeKind
    member: Member


@dataclass(frozen=True)
class Timing:
    suspect_after: float
    remove_after: float
    tombstone_after: float
    # swim: how long an accused member stays suspect at least (0: liveness by silence), and
    # one gossip round, which scales it with log N so that a refutation can spread in time
    suspicion_after: float = 0.0
    round_seconds: float = 0.0


@dataclass
class _Record:
    member: Member
    heard: float  # local time its version last advanced
    since: float  # local time its state last changed
    suspect: bool = False
    beat: Beat | None = None  # the newest verified heartbeat of its current incarnation
    accusation: Accusation | None = None  # swim: of its current record, verified
    accused: float = 0.0  # local time the accusation arrived


@dataclass(frozen=True)
class View:
    """One row of the local map, for exports and `tyd status`."""

    member: Member
    state: str  # alive, suspect, dead or left
    last_heard: float  # seconds ago


Sign = Callable[[Member], Member]


def _unsigned(m: Member) -> Member:
    return m


class ClusterMap:
    def __init__(
        self,
        me: Member,
        timing: Timing,
        clock: Clock,
        max_members: int = MAX_MEMBERS,
        sign: Sign = _unsigned,
    ) -> None:
        self._sign = sign
        self._me = sign(me)
        self._timing = timing
        self._clock = clock
        self._max = max_members
        self._records: dict[str, _Record] = {}
        self.version = 0  # bumps on every local change; shown by `tyd status`
        self.overflow = 0  # entries dropped because the map was full
        self.my_beat: Beat | None = None  # our newest heartbeat (digest gossip)
        self.refuted = 0  # accusations of ourselves refuted (swim gossip)

    @property
    def me(self) -> Member:
        return self._me

    def beat(self) -> Member:
        """Advance our own heartbeat (once per tick) and sign the new entry."""
        self._me = self._sign(dataclasses.replace(self._me, heartbeat=self._me.heartbeat + 1))
        return self._me

    def restamp(self) -> Member:
        """Sign our entry again at the same version (swim gossip: fresh for whoever gets it
        from us, and no news for anyone who holds it)."""
        self._me = self._sign(self._me)
        return self._me

    def freshen(self, entry: Member) -> None:
        """A verified entry of the same version as the one held, signed later: keep it, so
        what we pass on stays fresh. Nothing changes (swim revs leave the stamp out)."""
        rec = self._records.get(entry.name)
        if (
            rec is not None
            and rec.member.version == entry.version
            and rec.member.state is entry.state
            and entry.stamp > rec.member.stamp
            and entry.fingerprint == rec.member.fingerprint
        ):
            rec.member = entry

    @property
    def probing(self) -> bool:
        return self._timing.suspicion_after > 0

    def suspicion_seconds(self) -> float:
        """How long an accused member stays suspect before it is removed: long enough for
        the accusation to reach it and its refutation to come back (Lifeguard's 4 log10 N
        rounds), never less than suspicion_after."""
        n = max(10, len(self._records) + 1)
        return max(self._timing.suspicion_after, 4 * math.log10(n) * self._timing.round_seconds)

    def accusation_of(self, name: str) -> Accusation | None:
        rec = self._records.get(name)
        return rec.accusation if rec else None

    def accusation_is_news(self, a: Accusation) -> bool:
        """Does it accuse a member's current record, not already accused (or accused by
        one that loses the tie: every map keeps the same one, so digests agree)? Checked
        before verifying it, so each is verified once."""
        if a.target == self._me.name:
            return self._me.state is State.ALIVE and a.version == self._me.version
        rec = self._records.get(a.target)
        return (
            rec is not None
            and rec.member.state is State.ALIVE
            and rec.member.version == a.version
            and (rec.accusation is None or _first(a, rec.accusation))
        )

    def merge_accusations(self, accusations: Iterable[Accusation]) -> None:
        """Take verified accusations: the accused is suspect; we refute one of ourselves."""
        now = self._clock()
        for a in accusations:
            if not self.accusation_is_news(a):
                continue
            if a.target == self._me.name:
                self._me = self._sign(
                    dataclasses.replace(self._me, heartbeat=self._me.heartbeat + 1)
                )
                self.refuted += 1
            else:
                rec = self._records[a.target]
                if rec.accusation is None:  # a tie-break keeps the time it became suspect
                    rec.accused, rec.suspect = now, True
                rec.accusation = a
            self.version += 1

    def heard_from(self, name: str) -> None:
        """We spoke with it ourselves (swim: a probe it answered, a request it made)."""
        rec = self._records.get(name)
        if rec is not None and rec.member.state is State.ALIVE:
            rec.heard = self._clock()

    def leave(self) -> Member:
        """Mark ourselves as leaving, with a version no live entry of ours can beat."""
        self._me = self._sign(
            dataclasses.replace(self._me, state=State.LEFT, heartbeat=self._me.heartbeat + 1)
        )
        self.version += 1
        return self._me

    def resign(self, sign: Sign) -> Member:
        """Sign our entry with a new key and certificate (after a renewal) from now on."""
        self._sign = sign
        self._me = sign(dataclasses.replace(self._me, heartbeat=self._me.heartbeat + 1))
        self.version += 1
        return self._me

    def is_news(self, entry: Member) -> bool:
        """Would merging this entry change anything? Checked before verifying it, so an
        entry that many peers repeat is verified once."""
        if entry.name == self._me.name:
            return entry.version >= self._me.version
        rec = self._records.get(entry.name)
        return rec is None or entry.newer_than(rec.member)

    def beat_is_news(self, b: Beat) -> bool:
        """Is this a newer heartbeat of a member's current incarnation (alive, or dead by
        our own judgement)? Checked before verifying it, so each is verified once."""
        rec = self._records.get(b.name)
        return (
            rec is not None
            and rec.member.state is not State.LEFT
            and rec.member.incarnation == b.incarnation
            and (rec.beat is None or b.count > rec.beat.count)
        )

    def merge_beats(self, beats: Iterable[Beat]) -> list[Change]:
        """Take verified heartbeats: each newer one is hearing from its member, and one
        we had judged dead is alive again (its own signed word, newer than its silence)."""
        now = self._clock()
        changes: list[Change] = []
        for b in beats:
            if not self.beat_is_news(b):
                continue
            rec = self._records[b.name]
            if (
                rec.member.state is State.DEAD
                and rec.beat is not None
                and (b.stamp - rec.beat.stamp <= self._timing.remove_after * 1000)
            ):
                continue  # signed before its silence made it dead: no sign of life
            rec.beat, rec.heard = b, now
            if rec.member.state is State.DEAD:
                rec.member = dataclasses.replace(rec.member, state=State.ALIVE)
                rec.since = now
                self.version += 1
                changes.append(Change(ChangeKind.ADD, rec.member))
            if rec.suspect:
                rec.suspect = False
                self.version += 1
        return changes

    def beat_of(self, name: str) -> Beat | None:
        if name == self._me.name:
            return self.my_beat
        rec = self._records.get(name)
        return rec.beat if rec else None

    def merge(self, entries: Iterable[Member]) -> list[Change]:
        now = self._clock()
        changes: list[Change] = []
        for entry in entries:
            if entry.name == self._me.name:
                self._refute(entry)
                continue
            rec = self._records.get(entry.name)
            if rec is None:
                if len(self._records) >= self._max - 1:
                    self.overflow += 1
                    continue
                self._records[entry.name] = _Record(entry, heard=now, since=now)
                self.version += 1
                if entry.state is State.ALIVE:
                    changes.append(Change(ChangeKind.ADD, entry))
                continue
            if not entry.newer_than(rec.member):
                continue
            old = rec.member
            rec.member = entry
            self.version += 1
            if entry.incarnation != old.incarnation or entry.state is State.LEFT:
                rec.beat = None  # beats count within one live incarnation
            rec.accusation = None  # it accused an older record: refuted
            if entry.version > old.version:
                rec.heard = now
            rec.suspect = False  # a newer word of its own
            if old.state is not entry.state:
                rec.since = now
            changes.extend(_transition(old, entry))
        return changes

    def _refute(self, entry: Member) -> None:
        """An entry of ours that is not older than our own (signed by us: an earlier run
        whose clock was ahead, or a second process with our key): never accept it, but
        outrun it so that our current entry wins everywhere."""
        if self._me.state is not State.ALIVE or entry.version < self._me.version:
            return
        if self.probing and entry.version == self._me.version and entry.state is State.ALIVE:
            return  # swim: our own record echoed (a WELCOME holds us), nothing to outrun
        if entry.incarnation > self._me.incarnation:
            me = dataclasses.replace(self._me, incarnation=entry.incarnation + 1, heartbeat=0)
        else:
            me = dataclasses.replace(self._me, heartbeat=entry.heartbeat + 1)
        self._me = self._sign(me)
        self.version += 1

    def expire(self) -> list[Change]:
        """Apply the liveness rules at the current time."""
        now = self._clock()
        changes: list[Change] = []
        suspicion = self.suspicion_seconds() if self.probing else 0.0
        for name, rec in list(self._records.items()):
            if rec.member.state is State.ALIVE and self.probing:
                if rec.accusation is not None and now - rec.accused >= suspicion:
                    old = rec.member
                    rec.member = dataclasses.replace(old, state=State.DEAD)
                    rec.since, rec.suspect = now, False
                    self.version += 1
                    changes.append(Change(ChangeKind.REMOVE, old))
            elif rec.member.state is State.ALIVE:
                silent = now - rec.heard
                if silent >= self._timing.remove_after:
                    old = rec.member
                    rec.member = dataclasses.replace(old, state=State.DEAD)
                    rec.since, rec.suspect = now, False
                    self.version += 1
                    changes.append(Change(ChangeKind.REMOVE, old))
                elif (silent >= self._timing.suspect_after) != rec.suspect:
                    rec.suspect = not rec.suspect
                    self.version += 1
            elif now - rec.since >= self._timing.tombstone_after:
                del self._records[name]
                self.version += 1
        return changes

    def get(self, name: str) -> Member | None:
        if name == self._me.name:
            return self._me
        rec = self._records.get(name)
        return rec.member if rec else None

    def members(self) -> tuple[Member, ...]:
        """Everything we gossip: ourselves, the members we hear from and those that said
        they left. Suspects and the dead are our own judgement and stay here (swim: an
        accused member travels, with its accusation; only the dead stay)."""
        return (
            self._me,
            *(
                r.member
                for r in self._records.values()
                if (r.member.state is State.ALIVE and (self.probing or not r.suspect))
                or r.member.state is State.LEFT
            ),
        )

    def live(self) -> list[Member]:
        """Other members that are alive (suspects included), sorted by name."""
        return sorted(
            (r.member for r in self._records.values() if r.member.state is State.ALIVE),
            key=lambda m: m.name,
        )

    def live_names(self) -> set[str]:
        return {m.name for m in self.live()} | (
            {self._me.name} if self._me.state is State.ALIVE else set()
        )

    def view(self) -> list[View]:
        now = self._clock()
        rows = [View(self._me, self._me.state.value, 0.0)]
        for rec in self._records.values():
            state = "suspect" if rec.suspect else rec.member.state.value
            rows.append(View(rec.member, state, max(0.0, now - rec.heard)))
        return sorted(rows, key=lambda v: v.member.name)


def _first(a: Accusation, b: Accusation) -> bool:
    return (a.accuser, a.signature) < (b.accuser, b.signature)


def _transition(old: Member, new: Member) -> list[Change]:
    was, now = old.state is State.ALIVE, new.state is State.ALIVE
    if was and not now:
        return [Change(ChangeKind.REMOVE, old)]
    if now and not was:
        return [Change(ChangeKind.ADD, new)]
    # A certificate renewed during a run (same address, same incarnation) changes no hook: the
    # firewall holds addresses and the IPsec connection names the peer's identity, which
    # charon checks against the CA and the CRL whatever the certificate; re-adding it would
    # tear down the live IKE_SA. A new run (a reboot, a new key) or a move replaces it.
    moved = old.address != new.address
    restarted = old.incarnation != new.incarnation and old.fingerprint != new.fingerprint
    if was and now and (moved or restarted):
        return [Change(ChangeKind.REMOVE, old), Change(ChangeKind.ADD, new)]
    return []
