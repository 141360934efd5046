"""The tyd daemon: one asyncio lifecycle per node.

Every exchange is one short mutual-TLS connection carrying one request and at most one
reply: HELLO -> WELCOME (add me, here is the map), SYNC -> MAP (gossip: heartbeats and
anti-entropy), LEAVE. A starting node (Terrence) HELLOs a seed or any node it has ever
known, then every member of the map it gets back, until every live member it knows has
welcomed it (swim: probed it, which adds us as well and swaps only the buckets that
differ); then it is a Philip. Each tick a node advances its heartbeat and SYNCs with
`gossip_fanout` random members.

With `gossip: digest` (the default; tyd.gossip) a tick pulls instead: DIGEST -> DELTA, so
only what changed travels (records without certificates where the peer has them, signed
heartbeats apart from records), a record is re-signed only when it changes or a third of
its freshness has passed, and a LEAVE goes to a few members (gossip spreads the signed
`left` record). A join is Terrence and Philip in both modes: the newcomer gets the map from a
Philip, then asks every member to add it (a HELLO each, once), then becomes a Philip.

With `gossip: swim` (tyd.swim) a tick probes one member, round robin over a shuffled list:
PROBE -> ACK carries bucket digests of the map, so a steady cluster sends the same few
hundred bytes a tick at any size, and SWAP -> GIVE swap only the records and accusations of
the buckets that differ. The TLS exchange proves the member alive; nobody signs anything per
tick (a node re-signs its record, same version, only to keep it fresh for whoever gets it
from the node itself). A member that does not answer is probed through `gossip_fanout`
others (PROBE_REQ); if none reaches it, this node signs an accusation, which spreads as a
change; the accused refutes it with a newer record, else everyone removes it after
ClusterMap.suspicion_seconds. A record passed on by a third party after it went stale is
refused (as in every mode); its member is asked directly (HELLO) instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Iterable, Sequence

from chaosnode.files import atomic_write

from . import codec, exports, gossip, memory, status, swim
from .codec import Kind, Message
from .config import Config
from .errors import CodecError, IdentityError, ProtocolError, TydError
from .hooks import Hook, HookRunner
from .member import Accusation, Beat, Member, State
from .membership import Change, ChangeKind, ClusterMap, Timing, View
from .record import Freshness, RecordError, Signer, Verifier, load_trust
from .tls import check_identity, client_context, peer_cert, pem_cert_der, server_context
from .transport import close, read_message, write_message

COUNTERS = (
    "conns_in",
    "conns_out",
    "msgs_in",
    "msgs_out",
    "refused",
    "malformed",
    "out_of_order",
    "timeouts",
    "dropped",
    "busy",
    "busy_source",
    "unreachable",
    "forged",
    "stale",
    "hook_errors",
    "internal_errors",
    "tls_reloads",
    "beats_in",
    "records_in",
    "certs_missing",
    "probes",
    "probes_failed",
    "probes_indirect",
    "accused",
    "accusations_in",
)
MAX_HINTS = 256  # members met only in stale records, to ask directly (swim)
MAX_OUTBOUND = 16  # concurrent exchanges this node starts (joins, gossip, leave)


class Node:
    def __init__(
        self,
        cfg: Config,
        hooks: Sequence[Hook] = (),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        write_files: bool = True,
        outbound: asyncio.Semaphore | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.log = logging.getLogger(f"tyd.{cfg.node}")
        self.counters: collections.Counter[str] = collections.Counter(
            {name: 0 for name in COUNTERS}
        )
        # entries and senders refused, by RecordError reason (bad_cert, stale, ...): the
        # fuzzer and `tyd status` see what was dropped, not only how much
        self.refusals: collections.Counter[str] = collections.Counter()
        self._wall = wall
        self._freshness = Freshness(cfg.clock_skew_seconds, cfg.remove_after_seconds)
        self._verifier = self._load_verifier()
        signer = self._signer = self._load_signer()
        self._digest = cfg.gossip == "digest"
        self._swim = cfg.gossip == "swim"
        # a record stays fresh for max_age: re-sign it a third of the way (digest gossip)
        self._refresh_seconds = self._freshness.max_age_seconds / 3
        self._beats = 0
        self._lacking: dict[str, str] = {}  # member -> fingerprint whose certificate we lack
        me = Member(
            name=cfg.node,
            address=cfg.address,
            fingerprint=signer.fingerprint,
            state=State.ALIVE,
            incarnation=int(wall() * 1000),
            heartbeat=0,
            slots=os.cpu_count() or 1,
        )
        timing = Timing(
            cfg.suspect_after_seconds,
            cfg.remove_after_seconds,
            self._freshness.tombstone_seconds,
            suspicion_after=cfg.remove_after_seconds if self._swim else 0.0,
            round_seconds=cfg.heartbeat_seconds,
        )
        self.map = ClusterMap(me, timing, clock, sign=signer)
        self.map.my_beat = signer.beat(self.map.me, 0)
        self._per_source: collections.Counter[str] = collections.Counter()
        self._reclaimer = memory.Reclaimer()
        self._clock = clock
        self._rng = rng or random.Random()
        self._server_ctx = server_context(cfg.tls)
        self._client_ctx = client_context(cfg.tls)
        self._tls_stamp = self._trust_stamp()
        self._hooks = HookRunner(hooks, self.log, lambda: self._count("hook_errors"))
        self._write_files = write_files
        # Bounds the handshakes in flight: under a mass boot, hundreds of concurrent TLS
        # handshakes all progress in lockstep and all finish late (or time out). Nodes that
        # share one CPU (the benchmark) share one semaphore.
        self._outbound = outbound or asyncio.Semaphore(MAX_OUTBOUND)
        self.welcomed: set[str] = set()
        self.joined = False
        self._started = clock()
        self._open = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._syncing: set[str] = set()
        self._server: asyncio.Server | None = None
        self._live_signature: tuple[tuple[str, str, str, int, str], ...] | None = None
        self._contacts = self._initial_contacts()
        self._probe_order: list[str] = []  # swim: who to probe next, a shuffled round
        # swim: members met in stale records: name -> (address, fingerprint, when asked)
        self._hints: dict[str, tuple[ipaddress.IPv4Address, str, float | None]] = {}

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Accept(self._accepted),
            host=str(self.cfg.address),
            port=self.cfg.port,
            reuse_address=True,
            backlog=1024,
        )
        self.log.info(
            "listening on %s:%d as %s (epoch %d)",
            self.cfg.address,
            self.cfg.port,
            self.cfg.node,
            self.map.me.incarnation,
        )
        self._spawn(self._hooks.run())
        self._spawn(self._join())
        self._spawn(self._tick_loop())

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.start()
        await self._stop.wait()
        await self.shutdown(leave=True)

    async def shutdown(self, leave: bool = True) -> None:
        """Stop serving; with `leave`, announce LEAVE to every live member first."""
        if self._server is not None:
            self._server.close()
        if leave:
            me = self.map.leave()
            msg = codec.leave(self.cfg.cluster, me)
            targets = self._leave_targets()
            self.log.info("leaving: telling %d members", len(targets))
            try:  # bounded, whatever the number of dead members: systemd is waiting
                await asyncio.wait_for(
                    asyncio.gather(
                        *(self._request(m.name, m.address, m.fingerprint, msg) for m in targets)
                    ),
                    2 * self.cfg.io_timeout_seconds,
                )
            except TimeoutError:
                self.log.warning("LEAVE did not reach every member in time")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), self.cfg.io_timeout_seconds)
        self._write_status()

    def _leave_targets(self) -> list[Member]:
        """Full gossip tells every member; digest gossip tells a few (and the seeds), and
        their pulls spread our signed `left` record in O(log N) rounds."""
        live = self.map.live()
        if not (self._digest or self._swim):
            return live
        seeds = {s.name for s in self.cfg.seeds}
        few = self._rng.sample(live, min(2 * self.cfg.gossip_fanout, len(live)))
        return [*few, *(m for m in live if m.name in seeds and m not in few)]

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._count("internal_errors")
            self.log.error("task failed: %r", task.exception())

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    # -- joining (Terrence) -----------------------------------------------------------

    def _initial_contacts(self) -> list[tuple[str, ipaddress.IPv4Address]]:
        """Seeds first, then every node an earlier run of this node knew."""
        seen = {self.cfg.node}
        out = []
        known = exports.known_contacts(self.cfg.exports.json)
        for name, address in [(s.name, s.address) for s in self.cfg.seeds] + known:
            if name not in seen:
                seen.add(name)
                out.append((name, address))
        return out

    @property
    def is_seed(self) -> bool:
        return any(s.name == self.cfg.node for s in self.cfg.seeds)

    async def _join(self) -> None:
        delay = self.cfg.heartbeat_seconds
        while not self._stop.is_set():
            if not self.map.live() and await self._contact_any() is None:
                if self.is_seed:
                    self.log.info("no other node answers; founding the cluster")
                    break
                self.log.info("no Philip answers yet; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.remove_after_seconds)
                continue
            pending = [m for m in self.map.live() if m.name not in self.welcomed]
            hinted = self._take_hints()
            if not pending and not hinted:
                break
            await self._hooks.drain(self.cfg.io_timeout_seconds)  # see HookRunner.settled
            await asyncio.gather(
                *(self._hello_member(m) for m in pending),
                *(self._ask_hinted(n, a, fp) for n, a, fp in hinted),
            )
            tried = {m.name for m in pending}
            left = {m.name for m in self.map.live()} - self.welcomed
            if left and left <= tried:  # only failures left (members learned meanwhile
                await asyncio.sleep(self.cfg.heartbeat_seconds)  # are asked right away)
        if self._stop.is_set():
            return
        self.joined = True
        self.log.info(
            "joined: a Philip of %d live nodes; added by %s",
            len(self.map.live_names()),
            ", ".join(sorted(self.welcomed)) or "none",
        )
        self._after_change()

    async def _contact_any(self) -> str | None:
        """HELLO the contacts in order until one welcomes us; returns its name."""
        for name, address in self._contacts:
            if await self._hello(name, address, None):
                return name
        return None

    async def _hello_member(self, m: Member) -> None:
        async with self._outbound:
            if m.name in self.welcomed:  # it HELLOed us while we waited our turn
                return
        if self._swim:  # a PROBE adds us too, and brings only the buckets that differ
            self._syncing.add(m.name)
            try:
                await self._swim_pull(m)
            finally:
                self._syncing.discard(m.name)
            return
        await self._hello(m.name, m.address, m.fingerprint)

    async def _ask_hinted(self, name: str, address: ipaddress.IPv4Address, fp: str) -> None:
        """A member met only in a stale record: ask it directly; its answer carries its own
        record, fresh (swim: a PROBE, whose GIVE holds it, as we lack it)."""
        if self._swim:
            await self._swim_pull(Member(name, address, fp, State.ALIVE, 0, 0))
        else:
            await self._hello(name, address, fp)

    def _knows_me(self, peer: str, members: Iterable[Member]) -> None:
        """A peer whose map holds us has added us: no need to ask it again."""
        me = self.map.me
        if any(
            m.name == me.name and m.state is State.ALIVE and m.incarnation == me.incarnation
            for m in members
        ):
            self.welcomed.add(peer)

    async def _hello(
        self, name: str, address: ipaddress.IPv4Address, fingerprint: str | None
    ) -> bool:
        reply = await self._request(
            name, address, fingerprint, codec.hello(self.cfg.cluster, self.map.me), Kind.WELCOME
        )
        if reply is None:
            return False
        if name not in self.welcomed:
            self.log.info("welcomed by %s (%s)", name, address)
        self.welcomed.add(name)
        self._merge_reply(reply.members, f"{name} ({address})")
        return True

    def _take_hints(self, limit: int = MAX_HINTS) -> list[tuple[str, ipaddress.IPv4Address, str]]:
        """Members met only in stale records (swim), not yet asked: ask each once (HELLO);
        its WELCOME carries its own record, fresh. A replayed record of a dead member costs
        one failed connection."""
        out: list[tuple[str, ipaddress.IPv4Address, str]] = []
        now = self._clock()
        for name, (address, fp, asked) in list(self._hints.items()):
            if self.map.get(name) is not None:  # its own record came, or we judged it
                del self._hints[name]
            elif asked is None and len(out) < limit:
                self._hints[name] = (address, fp, now)
                out.append((name, address, fp))
            elif asked is not None and now - asked > self.cfg.remove_after_seconds:
                del self._hints[name]
        return out

    def _merge_reply(self, claims: Iterable[Member], where: str) -> None:
        """Merge what one peer's reply carries. Whatever is wrong with it (refused entries
        are counted in _verified; a bug is counted internal_errors) ends with this reply:
        the join, tick or serve loop that asked goes on with the other peers."""
        try:
            self._apply(self.map.merge(self._verified(claims, where)))
        except Exception as exc:
            self._internal_error(f"merging the reply of {where}", exc)

    def _internal_error(self, what: str, exc: BaseException) -> None:
        """A bug, not bad input (refusals are counted by reason): keep going, say so loudly."""
        self._count("internal_errors")
        self.log.error("internal error %s: %r", what, exc, exc_info=exc)

    # -- gossip ticks -------------------------------------------------------------------

    def _trust_stamp(self) -> tuple[int, ...]:
        """When the CRL and the CA last changed (a revocation lands as a new CRL file)."""
        stamp = []
        for path in (self.cfg.tls.crl, self.cfg.tls.ca):
            try:
                stamp.append(os.stat(path).st_mtime_ns)
            except OSError:
                stamp.append(-1)
        return tuple(stamp)

    def _load_verifier(self) -> Verifier:
        cfg = self.cfg
        return Verifier(
            load_trust(
                cfg.cluster, cfg.tls.ca, cfg.tls.crl, cfg.subnet, cfg.roster_map(), self._freshness
            ),
            self._wall,
        )

    def _load_signer(self) -> Signer:
        return Signer(
            self.cfg.cluster, self.cfg.tls.key, pem_cert_der(self.cfg.tls.cert), self._wall
        )

    def reload_trust(self, force: bool = False) -> bool:
        """Rebuild the TLS contexts and the record verifier when the CRL or CA changed (or
        on SIGHUP, which also adopts a renewed certificate and key of our own): a member
        revoked while we run is refused from its next connection and record on. A broken
        new file keeps the old state and is logged."""
        stamp = self._trust_stamp()
        if stamp == self._tls_stamp and not force:
            return False
        self._tls_stamp = stamp
        try:
            server, client = server_context(self.cfg.tls), client_context(self.cfg.tls)
            verifier, signer = self._load_verifier(), self._load_signer()
        except TydError as exc:
            self.log.warning("keeping the previous CRL, CA and certificate: %s", exc)
            return False
        self._server_ctx, self._client_ctx, self._verifier = server, client, verifier
        if signer.fingerprint != self.map.me.fingerprint:
            self._signer = signer
            self.map.resign(signer)
            self.log.info("now speaking with a renewed certificate %s...", signer.fingerprint[:16])
        self._count("tls_reloads")
        self.log.info("CRL or CA changed: reloaded (%s)", self.cfg.tls.crl)
        return True

    def _verified(self, claims: Iterable[Member], where: str) -> list[Member]:
        """The entries of a message that are news and that their own members signed;
        the rest is refused, counted (forged or stale) and logged once per message."""
        out: list[Member] = []
        refused: collections.Counter[str] = collections.Counter()
        first = ""
        for claim in claims:
            if not self.map.is_news(claim):
                continue
            try:
                out.append(self._verifier.verify(claim))
            except RecordError as exc:
                self._refused(exc)
                refused[exc.reason] += 1
                first = first or str(exc)
                if exc.stale and self._swim and claim.state is State.ALIVE:
                    self._hint(claim)
        if refused:
            self.log.warning(
                "refused %d entries from %s (%s); first: %s",
                sum(refused.values()),
                where,
                ", ".join(f"{n} {r}" for r, n in sorted(refused.items())),
                first,
            )
        return out

    def _hint(self, m: Member) -> None:
        if (
            m.name != self.cfg.node
            and self.map.get(m.name) is None  # only members we lack: our judgement stands
            and m.name not in self._hints
            and len(self._hints) < MAX_HINTS
        ):
            self._hints[m.name] = (m.address, m.fingerprint, None)

    def _refused(self, exc: RecordError) -> None:
        self._count("stale" if exc.stale else "forged")
        self.refusals[exc.reason] += 1

    async def _tick_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.cfg.heartbeat_seconds)
            ticks += 1
            try:
                self._tick(ticks)
            except Exception as exc:  # one bad tick must not end the heartbeat for good
                self._internal_error(f"in tick {ticks}", exc)

    def _tick(self, ticks: int) -> None:
        reseed_every = max(1, round(self.cfg.remove_after_seconds / self.cfg.heartbeat_seconds))
        self.reload_trust()
        if self._reclaimer.due():
            memory.reclaim()
        if not (self._digest or self._swim):
            self.map.beat()
        self._refresh_me()
        if self._digest:
            self._beats += 1
            self.map.my_beat = self._signer.beat(self.map.me, self._beats)
        self._apply(self.map.expire())
        if self.joined and self._swim:
            target = self._next_probe()
            if target is not None:
                self._syncing.add(target.name)
                self._spawn(self._probe(target))
            for name, address, fp in self._take_hints(limit=2):
                self._spawn(self._ask_hinted(name, address, fp))
        elif self.joined:  # a Terrence is busy asking to be added; Philips gossip
            live = [
                m
                for m in self.map.live()
                if m.name not in self._syncing and self._hooks.settled(m.name)
            ]
            peers = self._rng.sample(live, min(self.cfg.gossip_fanout, len(live)))
            if self._digest:  # one after another: each summary holds what the last brought
                self._syncing.update(m.name for m in peers)
                self._spawn(self._pulls(peers))
            else:
                for m in peers:
                    self._spawn(self._sync(m))
        if self.joined and ticks % reseed_every == 0:
            self._reseed()
        rows = self.map.view()  # one sorted view of the map for both (O(N) each tick)
        self._after_change(rows)
        self._write_status(rows)

    def _reseed(self) -> None:
        """Knock on seeds that are not in the map: heals a cluster split at boot. (Swim:
        not on a seed judged dead, which refutes with its own record if it is alive.)"""
        live = self.map.live_names()
        for seed in self.cfg.seeds:
            if self._swim and self.map.get(seed.name) is not None:
                continue  # swim: our judgement of it stands until its tombstone is gone
            if seed.name not in live:
                self._spawn(self._hello(seed.name, seed.address, None))

    async def _sync(self, m: Member) -> None:
        self._syncing.add(m.name)
        try:
            msg = codec.sync(self.cfg.cluster, self.map.me, self.map.members())
            reply = await self._request(m.name, m.address, m.fingerprint, msg, Kind.MAP)
            if reply is not None:
                self._merge_reply(reply.members, f"{m.name} ({m.address})")
                self._knows_me(m.name, reply.members)
        finally:
            self._syncing.discard(m.name)

    def _refresh_me(self) -> None:
        """Re-sign our record a third of the way to stale, by the wall clock: checked every
        tick and before every DIGEST, so a late tick (a busy loop) never sends a stale one.
        Swim signs the same version again: fresh for whoever gets it from us, no news."""
        if (
            (self._digest or self._swim)
            and self.map.me.state is State.ALIVE
            and (self._wall() - self.map.me.stamp / 1000 > self._refresh_seconds)
        ):
            if self._swim:
                self.map.restamp()
            else:
                self.map.beat()

    # -- swim: probes ---------------------------------------------------------------------

    def _next_probe(self) -> Member | None:
        """The next member of a shuffled round over the live members (SWIM's round robin:
        each is probed once a round, by each node), skipping one being probed or whose
        hooks are not settled yet."""
        for _ in range(2):
            while self._probe_order:
                m = self.map.get(self._probe_order.pop())
                if (
                    m is not None
                    and m.state is State.ALIVE
                    and m.name != self.cfg.node
                    and m.name not in self._syncing
                    and self._hooks.settled(m.name)
                ):
                    return m
            self._probe_order = [m.name for m in self.map.live()]
            self._rng.shuffle(self._probe_order)
        return None

    async def _probe(self, m: Member) -> None:
        """Probe m; if it does not answer, through others; if none reaches it, accuse it."""
        try:
            self._count("probes")
            if await self._swim_pull(m):
                return
            self._count("probes_failed")
            others = [h for h in self.map.live() if h.name != m.name]
            helpers = self._rng.sample(others, min(self.cfg.gossip_fanout, len(others)))
            if helpers:
                self._count("probes_indirect", len(helpers))
                answers = await asyncio.gather(*(self._ask_probe(h, m) for h in helpers))
                if any(answers):
                    return
            held = self.map.get(m.name)
            if held is None or held.version != m.version or held.state is not State.ALIVE:
                return  # it spoke meanwhile (a newer record), or left
            if self.map.accusation_of(m.name) is None:
                a = self._signer.accuse(self.map.me, m)
                self.map.merge_accusations((a,))
                self._count("accused")
                self.log.info(
                    "%s (%s) answers no probe, direct or through %d others: suspect",
                    m.name,
                    m.address,
                    len(helpers),
                )
        finally:
            self._syncing.discard(m.name)

    async def _ask_probe(self, helper: Member, target: Member) -> bool:
        self._refresh_me()
        reply = await self._request(
            helper.name,
            helper.address,
            helper.fingerprint,
            codec.probe_req(self.cfg.cluster, self.map.me, target.name),
            Kind.PROBED,
        )
        return reply is not None and reply.ok

    async def _swim_pull(self, m: Member) -> bool:
        """One PROBE exchange with m: True if m answered (alive). Where our bucket digests
        differ, swap what differs."""
        if self.map.me.state is not State.ALIVE:
            return True  # leaving: our LEAVE says the rest
        self._refresh_me()
        msg = codec.probe(self.cfg.cluster, self.map.me, swim.buckets(self.map))
        where = f"{m.name} ({m.address})"
        sent: set[str] = set()

        def answer(reply: Message) -> Message | None:
            if not reply.diff:
                return None
            records, accusations = swim.delta(self.map, reply.have, reply.diff, m.name)
            sent.update(r.name for r in records)
            return codec.swap(records, accusations, swim.wanted(self.map, reply.have))

        def then(given: Message) -> None:
            self._merge_reply(self._with_certs(given.members), where)
            self._merge_accusations(given.accusations, where)

        reply = await self._request(
            m.name, m.address, m.fingerprint, msg, Kind.ACK, answer, (Kind.GIVE, then)
        )
        if reply is None:
            return False
        if m.name not in self.welcomed:
            self.log.info("welcomed by %s (%s)", m.name, m.address)
        self.map.heard_from(m.name)
        self.welcomed.add(m.name)  # it took our record (else it refused us)
        return True

    def _merge_accusations(self, accusations: Iterable[Accusation], where: str) -> None:
        """Accusations that are news, each verified with its accuser's current record. One
        of ourselves is refuted unverified: a newer record costs a signature, and its
        accuser may be a member we never heard of, or judged dead since."""
        ok = []
        for a in accusations:
            if not self.map.accusation_is_news(a):
                continue
            if a.target == self.cfg.node:
                ok.append(a)
                continue
            accuser = self.map.get(a.accuser)
            if accuser is None:
                continue
            try:
                ok.append(self._verifier.verify_accusation(a, accuser))
            except RecordError as exc:
                self._refused(exc)
                self.log.warning("refused an accusation from %s: %s", where, exc)
        self._count("accusations_in", len(ok))
        before = self.map.refuted
        self.map.merge_accusations(ok)
        if self.map.refuted > before:
            self.log.info("accused by %s: refuted with a newer record", where)

    async def _pulls(self, peers: list[Member]) -> None:
        for m in peers:
            await self._pull(m)

    async def _pull(self, m: Member) -> None:
        """Digest gossip: tell m what we hold, take what we lack, push what it lacks."""
        if self.map.me.state is not State.ALIVE:  # leaving: our LEAVE says the rest
            self._syncing.discard(m.name)
            return
        self._syncing.add(m.name)
        try:
            self._refresh_me()
            msg = codec.digest(
                self.cfg.cluster,
                self.map.me,
                self._my_beat(),
                gossip.summary(self.map, self._lacking_now()),
            )
            where = f"{m.name} ({m.address})"

            def answer(reply: Message) -> Message | None:
                self._merge_reply(self._with_certs(reply.members), where)
                self._merge_beats(reply.beats, where)
                self.welcomed.add(m.name)  # it took our record (else it refused us)
                if not reply.want:
                    return None
                return codec.push(
                    *gossip.pushed(self.map, reply.want, {r.name for r in reply.members})
                )

            await self._request(m.name, m.address, m.fingerprint, msg, Kind.DELTA, answer)
        finally:
            self._syncing.discard(m.name)

    def _my_beat(self) -> Beat:
        assert self.map.my_beat is not None
        return self.map.my_beat

    def _lacking_now(self) -> frozenset[str]:
        for name, fp in list(self._lacking.items()):
            held = self.map.get(name)
            if held is None or held.fingerprint == fp or self._verifier.cert_of(fp):
                del self._lacking[name]
        return frozenset(self._lacking)

    def _with_certs(self, records: Iterable[Member]) -> list[Member]:
        """Records that are news, each with its certificate: carried, or met before. A
        record whose certificate we never met is asked for again, with it (rev `-`)."""
        out = []
        for r in records:
            if r.proof is None or not self.map.is_news(r):
                continue
            if not r.proof.cert:
                der = self._verifier.cert_of(r.fingerprint)
                if not der:
                    self._count("certs_missing")
                    self._lacking[r.name] = r.fingerprint
                    continue
                r = dataclasses.replace(r, proof=dataclasses.replace(r.proof, cert=der))
            out.append(r)
        self._count("records_in", len(out))
        return out

    def _merge_beats(self, beats: Iterable[Beat], where: str) -> None:
        """Heartbeats that are news, verified against their member's current record."""
        ok = []
        for b in beats:
            m = self.map.get(b.name)
            if m is None or not self.map.beat_is_news(b):
                continue
            try:
                ok.append(self._verifier.verify_beat(b, m))
            except RecordError as exc:
                self._refused(exc)
                self.log.warning("refused a heartbeat from %s: %s", where, exc)
        self._count("beats_in", len(ok))
        self._apply(self.map.merge_beats(ok))

    def _apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            m = change.member
            if change.kind is ChangeKind.REMOVE:
                self.welcomed.discard(m.name)
                self.log.info("removed %s (%s)", m.name, m.address)
            else:
                self.log.info("added %s (%s)", m.name, m.address)
            self._hooks.submit(change)

    # -- client side ----------------------------------------------------------------------

    async def _request(
        self,
        name: str,
        address: ipaddress.IPv4Address,
        fingerprint: str | None,
        msg: Message,
        expect: Kind | None = None,
        answer: Callable[[Message], Message | None] | None = None,
        then: tuple[Kind, Callable[[Message], None]] | None = None,
    ) -> Message | None:
        """One exchange with one peer; None when it failed (logged and counted). With
        `answer`, what it makes of the reply is sent back on the same connection; with
        `then`, the answer to that is read (of that kind) and handed over."""
        async with self._outbound:
            return await self._exchange(name, address, fingerprint, msg, expect, answer, then)

    async def _exchange(
        self,
        name: str,
        address: ipaddress.IPv4Address,
        fingerprint: str | None,
        msg: Message,
        expect: Kind | None,
        answer: Callable[[Message], Message | None] | None = None,
        then: tuple[Kind, Callable[[Message], None]] | None = None,
    ) -> Message | None:
        timeout = self.cfg.io_timeout_seconds
        self._count("conns_out")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    str(address),
                    self.cfg.port,
                    ssl=self._client_ctx,
                    local_addr=(str(self.cfg.address), 0),
                    ssl_handshake_timeout=timeout,
                ),
                timeout,
            )
        except (OSError, TimeoutError) as exc:
            self._count("unreachable")
            self.log.debug("%s (%s) unreachable: %s", name, address, exc)
            return None
        try:
            check_identity(
                peer_cert(writer.get_extra_info("ssl_object")), name, address, fingerprint
            )
            await write_message(writer, msg, timeout)
            self._count("msgs_out")
            if expect is None:
                return None
            reply = await read_message(reader, timeout)
            self._count("msgs_in")
            if reply.kind is Kind.REFUSED:
                self.log.warning("%s (%s) refused us: %s", name, address, reply.reason)
                return None
            if reply.kind is not expect:
                raise ProtocolError(f"sent {msg.kind.name}, got {reply.kind.name}")
            back = answer(reply) if answer is not None else None
            if back is not None:
                await write_message(writer, back, timeout)
                self._count("msgs_out")
                if then is not None:
                    last = await read_message(reader, timeout)
                    self._count("msgs_in")
                    if last.kind is not then[0]:
                        raise ProtocolError(f"sent {back.kind.name}, got {last.kind.name}")
                    then[1](last)
            return reply
        except Exception as exc:
            self._count_failure(exc, f"{name} ({address})")
            return None
        finally:
            await close(writer, timeout)

    # -- server side ----------------------------------------------------------------------

    def _accepted(self, transport: asyncio.Transport) -> None:
        """Admit a connection within the global and the per-source limits, so that one
        address cannot starve the others (a refused one is closed at once, unread)."""
        self._count("conns_in")
        peer = transport.get_extra_info("peername")
        source = str(peer[0]) if peer else "?"
        if self._open >= self.cfg.max_connections:
            self._count("busy")
            transport.abort()
            return
        if self._per_source[source] >= self.cfg.max_connections_per_source:
            self._count("busy_source")
            if self.counters["busy_source"] % 100 == 1:
                self.log.warning(
                    "%s holds %d connections: refusing more (%d so far)",
                    source,
                    self._per_source[source],
                    self.counters["busy_source"],
                )
            transport.abort()
            return
        self._open += 1
        self._per_source[source] += 1
        self._spawn(self._serve(transport, source))

    def _release(self, source: str) -> None:
        self._open -= 1
        self._reclaimer.closed()
        self._per_source[source] -= 1
        if self._per_source[source] <= 0:
            del self._per_source[source]

    async def _serve(self, transport: asyncio.Transport, source: str) -> None:
        timeout = self.cfg.io_timeout_seconds
        peer = transport.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if peer else "?"
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                tls = await loop.start_tls(
                    transport,
                    protocol,
                    self._server_ctx,
                    server_side=True,
                    ssl_handshake_timeout=timeout,
                )
            except (OSError, TimeoutError) as exc:
                self._count("refused")
                self.log.warning("refused %s: TLS: %s", where, exc or type(exc).__name__)
                return
            if tls is None:
                raise ConnectionError("closed during the TLS handshake")
            protocol.connection_made(tls)
            writer = asyncio.StreamWriter(tls, protocol, reader, loop)
            await self._handle(reader, writer, peer[0] if peer else "", timeout)
        except Exception as exc:
            self._count_failure(exc, where)
        finally:
            self._release(source)
            if writer is not None:
                await close(writer, timeout)
            else:
                transport.abort()

    async def _handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        source: str,
        timeout: float,
    ) -> None:
        cert = peer_cert(writer.get_extra_info("ssl_object"))
        msg = await read_message(reader, timeout)
        self._count("msgs_in")
        if msg.kind not in codec.REQUESTS or msg.sender is None:
            raise ProtocolError(f"{msg.kind.name} is not a request")
        sender = msg.sender
        if msg.kind in codec.LEAN_SENDER and sender.proof is not None:  # the handshake carried it
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True) or b""
            sender = dataclasses.replace(sender, proof=dataclasses.replace(sender.proof, cert=der))
        try:
            if msg.cluster != self.cfg.cluster:
                raise IdentityError(f"is of cluster {msg.cluster!r}, not {self.cfg.cluster!r}")
            check_identity(cert, sender.name, sender.address, sender.fingerprint)
            try:
                sender = self._verifier.verify(sender)
            except RecordError as exc:
                self._refused(exc)
                raise IdentityError(f"its own entry is refused: {exc}") from None
            if source != str(sender.address):
                raise IdentityError(f"claims {sender.address} but connects from {source}")
            if sender.name == self.cfg.node:
                raise IdentityError("claims to be this node")
        except IdentityError as exc:
            with contextlib.suppress(OSError, TimeoutError):
                await write_message(writer, codec.refused(str(exc)), timeout)
            raise
        if (msg.kind is Kind.LEAVE) != (sender.state is State.LEFT):
            raise ProtocolError(f"{msg.kind.name} with sender state {sender.state.value}")
        others = (
            self._verified(msg.members, f"{sender.name} ({source})")
            if msg.kind is Kind.SYNC
            else []
        )
        self._apply(self.map.merge((sender, *others)))
        if self._swim:
            self.map.freshen(sender)
            self.map.heard_from(sender.name)
        if msg.kind is Kind.PROBE:
            await self._answer_probe(reader, writer, msg, sender.name, source, timeout)
            return
        if msg.kind is Kind.PROBE_REQ:
            target = self.map.get(msg.target)
            ok = (
                target is not None
                and target.state is State.ALIVE
                and target.name not in (self.cfg.node, sender.name)
                and await self._swim_pull(target)
            )
            await write_message(writer, codec.probed(ok), timeout)
            self._count("msgs_out")
            return
        if msg.kind is Kind.SYNC:
            self._knows_me(sender.name, msg.members)
        if msg.kind is Kind.DIGEST:
            if msg.beat is not None and msg.beat.name != sender.name:
                raise ProtocolError(
                    f"DIGEST of {sender.name} carries {msg.beat.name}'s beat "
                    "(a sender's beat is its own; others' come in deltas)"
                )
            if msg.beat is not None:
                self._merge_beats((msg.beat,), f"{sender.name} ({source})")
            records, beats = gossip.delta(self.map, msg.have, sender.name)
            want = gossip.wanted(self.map, msg.have, sender.name)
            await write_message(writer, codec.delta(records, beats, want), timeout)
            self._count("msgs_out")
            if want:
                await self._take_push(reader, sender.name, source, timeout)
            return
        reply = {Kind.HELLO: codec.welcome, Kind.SYNC: codec.map_reply}.get(msg.kind)
        if reply is not None:
            await write_message(writer, reply(self.map.members()), timeout)
            self._count("msgs_out")
        if msg.kind is Kind.HELLO:  # our WELCOME carries us: the sender adds us too
            self.welcomed.add(sender.name)

    async def _answer_probe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        msg: Message,
        peer: str,
        source: str,
        timeout: float,
    ) -> None:
        """ACK a PROBE: the buckets that differ and our summary of them; then take the SWAP
        and GIVE what it wants."""
        which = swim.diff(swim.buckets(self.map), msg.buckets)
        await write_message(
            writer, codec.ack(which, swim.summary(self.map, which, self._lacking_now())), timeout
        )
        self._count("msgs_out")
        if not which:
            return
        swapped = await read_message(reader, timeout)
        self._count("msgs_in")
        if swapped.kind is not Kind.SWAP:
            raise ProtocolError(f"after ACK, expected SWAP, got {swapped.kind.name}")
        where = f"{peer} ({source})"
        self._merge_reply(self._with_certs(swapped.members), where)
        self._merge_accusations(swapped.accusations, where)
        records, accusations = swim.given(
            self.map, swapped.want, swim.echoes(self.map, swapped.members), peer
        )
        await write_message(writer, codec.give(records, accusations), timeout)
        self._count("msgs_out")

    async def _take_push(
        self, reader: asyncio.StreamReader, peer: str, source: str, timeout: float
    ) -> None:
        pushed = await read_message(reader, timeout)
        self._count("msgs_in")
        if pushed.kind is not Kind.PUSH:
            raise ProtocolError(f"after DELTA, expected PUSH, got {pushed.kind.name}")
        where = f"{peer} ({source})"
        self._merge_reply(self._with_certs(pushed.members), where)
        self._merge_beats(pushed.beats, where)

    def _count_failure(self, exc: BaseException, where: str) -> None:
        if isinstance(exc, IdentityError):
            self._count("refused")
            self.log.warning("refused %s: %s", where, exc)
        elif isinstance(exc, CodecError):
            self._count("malformed")
            self.log.warning("malformed frame from %s: %s", where, exc)
        elif isinstance(exc, ProtocolError):
            self._count("out_of_order")
            self.log.warning("protocol violation by %s: %s", where, exc)
        elif isinstance(exc, TimeoutError):
            self._count("timeouts")
            self.log.info("timeout talking to %s", where)
        elif isinstance(exc, (asyncio.IncompleteReadError, ssl.SSLError, OSError)):
            self._count("dropped")
            self.log.info("connection with %s dropped: %s", where, exc)
        else:  # a bug, not bad input: keep serving, but say so loudly
            self._internal_error(f"serving {where}", exc)

    # -- exports and status -----------------------------------------------------------

    def _after_change(self, rows: list[View] | None = None) -> None:
        rows = self.map.view() if rows is None else rows
        signature = tuple(
            (v.member.name, str(v.member.address), v.member.fingerprint, v.member.slots, v.state)
            for v in rows
            if v.state in exports.LIVE
        )
        if signature == self._live_signature or not self._write_files:
            return
        self._live_signature = signature
        ex = self.cfg.exports
        try:
            atomic_write(
                ex.json,
                exports.render_json(self.cfg.cluster, self.cfg.node, self.map.version, rows),
            )
            atomic_write(ex.mosix, exports.render_mosix(rows))
            atomic_write(ex.hostfile, exports.render_hostfile(rows))
        except OSError as exc:
            self._count("hook_errors")
            self.log.error("cannot write the map exports: %s", exc)

    def _write_status(self, rows: list[View] | None = None) -> None:
        if not self._write_files:
            return
        doc = status.document(
            self.cfg.cluster,
            self.cfg.node,
            str(self.cfg.address),
            self.joined,
            self._clock() - self._started,
            self.map.version,
            self.map.view() if rows is None else rows,
            self._all_counters(),
            time.time(),
        )
        try:
            atomic_write(self.cfg.exports.status, _json(doc))
        except OSError as exc:
            self.log.error("cannot write the status file: %s", exc)

    def _all_counters(self) -> dict[str, int]:
        return {**self.counters, **{f"refused_{r}": n for r, n in self.refusals.items()}}

    # -- for tests and the benchmark ----------------------------------------------------

    def live_names(self) -> set[str]:
        return self.map.live_names()


class _Accept(asyncio.Protocol):
    """Accepts a TCP connection with reading paused, so that no byte of the TLS
    ClientHello can be consumed before the handshake starts."""

    def __init__(self, accepted: Callable[[asyncio.Transport], None]) -> None:
        self._accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self._accepted(transport)


def _json(doc: object) -> str:
    """Compact: json's C encoder (an indent makes it the pure-Python one, 4x slower; the
    status of 2000 members is written every tick; `tyd status` is its human form)."""
    return json.dumps(doc, separators=(",", ":")) + "\n"
