#!/usr/bin/env python3
"""One real tyd daemon (`python -m tyd`, its own process) inside a simulated cluster of N
members on loopback, today's protocol (`gossip: full`) beside digest and swim gossip in the
same run.

The simulated members are real TLS endpoints (one per member address, each with its own
certificate from the cluster CA) driven by this process: every member signs a heartbeat
every tick and its record when the protocol wants it (full: every tick; digest: a third of
the way to stale), answers the daemon's requests from the cluster's common view (a real
tyd ClusterMap holding every member's latest records and beats), and the daemon is asked
`gossip_fanout` times per tick, as N members picking 3 peers each would. Printed per size
and protocol: the daemon's CPU seconds per minute, payload bytes per second in and out (tyd
frames; TLS adds about 2.3 KB per connection, counted in the connections column), RSS, the
time it took to join (until the daemon is a Philip: every member added it, measured from
then on); then the rounds and seconds for a join and a leave to reach every
member, from an epidemic model of the same exchange pattern (push-pull with 3 random peers
a tick; full: the joiner HELLOs every member, a leaver tells every member). Swim: the members
sign nothing per tick (a record is signed again, same version, to stay fresh), the daemon is
probed once a tick (N members probing one member each) and probes one itself; the model is
push-pull with one peer a tick, a joiner HELLOs every member as in the other modes.

    .venv/bin/python bench/lab_scale.py [--sizes 100,500,2000] [--window 45]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import ipaddress
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "tyd"))

from charon_peers import rss_mb  # noqa: E402
from helpers import address, name, raw_config  # noqa: E402

from builder.model import KeyType  # noqa: E402
from builder.pki import Identity, Pki, cert_pem, key_pem, make_node_cert, new_key  # noqa: E402
from tyd import codec, gossip, swim  # noqa: E402
from tyd.codec import Kind, Message  # noqa: E402
from tyd.member import Member, State  # noqa: E402
from tyd.membership import ClusterMap, Timing  # noqa: E402
from tyd.record import Signer  # noqa: E402
from tyd.tls import pem_cert_der  # noqa: E402

CLUSTER = "lab-scale"
HEARTBEAT, SUSPECT, REMOVE, SKEW = 5.0, 15.0, 30.0, 30.0  # chaos.yaml's defaults
FANOUT = 3
REAL = ipaddress.IPv4Address(address(0))
REAL_NAME = name(0)


def member_address(i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(f"127.1.{i // 200}.{i % 200 + 1}")


@dataclasses.dataclass
class Sim:
    name: str
    address: ipaddress.IPv4Address
    signer: Signer
    record: Member
    server_ctx: ssl.SSLContext
    client_ctx: ssl.SSLContext
    beats: int = 0


async def read_frame(reader: asyncio.StreamReader) -> tuple[Message, int]:
    head = await asyncio.wait_for(reader.readexactly(codec.HEADER_SIZE), 30)
    header = codec.parse_header(head)
    payload = await asyncio.wait_for(reader.readexactly(header.length), 30)
    return codec.decode_payload(header.kind, payload), codec.HEADER_SIZE + header.length


@dataclasses.dataclass
class Counters:
    bytes_in: int = 0  # what the daemon received
    bytes_out: int = 0  # what it sent
    conns: int = 0


def make_members(root: Path, pki: Pki, n: int) -> list[Sim]:
    ca_key, ca = pki.ca()
    now = dt.datetime.now(dt.UTC)
    sims = []
    for i in range(n):
        name, address = f"m{i:04d}", member_address(i)
        key = new_key(KeyType.ED25519)
        cert = make_node_cert(
            Identity(name, f"{name}.lab.example", address), CLUSTER, key, ca_key, ca, now, 2
        )
        (root / f"{name}.key").write_bytes(key_pem(key))
        (root / f"{name}.pem").write_bytes(cert_pem(cert))
        signer = Signer(CLUSTER, root / f"{name}.key", pem_cert_der(root / f"{name}.pem"))
        me = Member(
            name, address, signer.fingerprint, State.ALIVE, int(time.time() * 1000) - 1000, 0
        )
        sims.append(
            Sim(
                name,
                address,
                signer,
                signer(me),
                _ctx(root, name, pki, True),
                _ctx(root, name, pki, False),
            )
        )
    return sims


def _ctx(root: Path, name: str, pki: Pki, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(root / f"{name}.pem"), str(root / f"{name}.key"))
    ctx.load_verify_locations(cafile=str(pki.paths.ca_cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    if not server:
        ctx.check_hostname = False
    return ctx


class Cluster:
    """The simulated members and their common view."""

    def __init__(self, sims: list[Sim], mode: str, real_cert: bytes) -> None:
        self.sims, self.mode, self.real_cert = sims, mode, real_cert
        self.by_name = {s.name: s for s in sims}
        self._welcome: tuple[int, bytes] = (-1, b"")
        timing = Timing(
            SUSPECT,
            REMOVE,
            REMOVE + 3 * SKEW,
            suspicion_after=REMOVE if mode == "swim" else 0.0,
            round_seconds=HEARTBEAT,
        )
        self.view = ClusterMap(sims[0].record, timing, time.monotonic)
        self.view.merge(s.record for s in sims[1:])
        self.c = Counters()
        self.ticks = 0
        self.refresh = max(1, int((REMOVE + 2 * SKEW) / 3 / HEARTBEAT))

    def tick(self) -> None:
        """Every member beats; records are re-signed as the protocol wants."""
        self.ticks += 1
        full = self.mode == "full"
        if self.mode == "swim":  # the same record again, fresh: no news for anyone
            if self.ticks % self.refresh == 1:
                for s in self.sims:
                    s.record = s.signer(s.record)
                    self.view.freshen(s.record)
                self.view._me = self.sims[0].record  # noqa: SLF001 - the view speaks for m0000
            return
        for s in self.sims:
            if full or self.ticks % self.refresh == 0:
                s.record = s.signer(dataclasses.replace(s.record, heartbeat=s.record.heartbeat + 1))
            if not full:
                s.beats += 1
                beat = s.signer.beat(s.record, s.beats)
                if s is self.sims[0]:
                    self.view.my_beat = beat
                else:
                    self.view.merge_beats([beat])
        if full or self.ticks % self.refresh == 0:
            self.view._me = self.sims[0].record  # noqa: SLF001 - the view speaks for m0000
            self.view.merge(s.record for s in self.sims[1:])

    def take(self, msg: Message) -> None:
        """What the daemon told us: its own record and beat, into the common view."""
        records = list(msg.members)
        if msg.sender is not None:
            records.append(msg.sender)
        fixed = [
            r
            if r.proof is None or r.proof.cert
            else dataclasses.replace(r, proof=dataclasses.replace(r.proof, cert=self.real_cert))
            for r in records
        ]
        self.view.merge(r for r in fixed if r.name not in self.by_name)
        beats = list(msg.beats) + ([msg.beat] if msg.beat else [])
        self.view.merge_beats(b for b in beats if b.name not in self.by_name)
        self.view.merge_accusations(a for a in msg.accusations if a.target not in self.by_name)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            msg, size = await read_frame(reader)
            self.c.bytes_out += size
            self.c.conns += 1
            self.take(msg)
            if msg.kind is Kind.PROBE:
                await self.answer_probe(msg, reader, writer)
                return
            data, want = self.answer(msg)
            if data:
                DEBUG[f"reply-{data[3]}"] = DEBUG.get(f"reply-{data[3]}", 0) + len(data)
                self.c.bytes_in += len(data)
                writer.write(data)
                await writer.drain()
                if want:
                    pushed, size = await read_frame(reader)
                    self.c.bytes_out += size
                    self.take(pushed)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        except Exception as exc:  # noqa: BLE001 - a bench: say it, keep going
            print(f"  simulator error serving: {exc!r}", file=sys.stderr)
        finally:
            writer.close()

    async def answer_probe(
        self, msg: Message, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        which = swim.diff(swim.buckets(self.view), msg.buckets)
        data = codec.encode(codec.ack(which, swim.summary(self.view, which)))
        self.c.bytes_in += len(data)
        writer.write(data)
        await writer.drain()
        if not which:
            return
        swapped, size = await read_frame(reader)
        self.c.bytes_out += size
        self.take(swapped)
        asker = msg.sender.name if msg.sender else ""
        back = codec.encode(
            codec.give(
                *swim.given(self.view, swapped.want, swim.echoes(self.view, swapped.members), asker)
            )
        )
        self.c.bytes_in += len(back)
        writer.write(back)
        await writer.drain()

    def answer(self, msg: Message) -> tuple[bytes, bool]:
        """The encoded reply (the whole map is encoded once a tick), and whether a PUSH
        follows."""
        if msg.kind in (Kind.HELLO, Kind.SYNC):
            kind = Kind.WELCOME if msg.kind is Kind.HELLO else Kind.MAP
            if self._welcome[0] != self.ticks:
                self._welcome = (self.ticks, codec.encode(codec.welcome(self.view.members())))
            frame = self._welcome[1]
            return codec.HEADER.pack(
                codec.MAGIC, codec.VERSION, kind, len(frame) - codec.HEADER_SIZE
            ) + frame[codec.HEADER_SIZE :], False
        if msg.kind is Kind.DIGEST:
            asker = msg.sender.name if msg.sender else ""
            records, beats = gossip.delta(self.view, msg.have, asker)
            want = gossip.wanted(self.view, msg.have, asker)
            return codec.encode(codec.delta(records, beats, want)), bool(want)
        if msg.kind is Kind.PROBE_REQ:  # every simulated member answers its probes
            return codec.encode(codec.probed(True)), False
        return b"", False

    async def ask(self, sim: Sim, delay: float) -> None:
        """One member's exchange with the daemon (its tick picked the daemon)."""
        await asyncio.sleep(delay)
        if self.mode == "full":
            msg = codec.sync(CLUSTER, sim.record, self.view.members())
        elif self.mode == "swim":
            msg = codec.probe(CLUSTER, sim.record, swim.buckets(self.view))
        else:
            beat = self.view.beat_of(sim.name) or sim.signer.beat(sim.record, sim.beats)
            msg = codec.digest(CLUSTER, sim.record, beat, gossip.summary(self.view))
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    str(REAL), PORT, ssl=sim.client_ctx, local_addr=(str(sim.address), 0)
                ),
                10,
            )
        except (OSError, TimeoutError):
            return
        try:
            data = codec.encode(msg)
            self.c.bytes_in += len(data)
            self.c.conns += 1
            writer.write(data)
            await writer.drain()
            DEBUG[f"ask-{msg.kind.name}"] = DEBUG.get(f"ask-{msg.kind.name}", 0) + len(data)
            reply, size = await read_frame(reader)
            self.c.bytes_out += size
            self.take(reply)
            if reply.kind is Kind.ACK and reply.diff:
                records, accusations = swim.delta(self.view, reply.have, reply.diff, REAL_NAME)
                back = codec.encode(
                    codec.swap(records, accusations, swim.wanted(self.view, reply.have))
                )
                self.c.bytes_in += len(back)
                writer.write(back)
                await writer.drain()
                given, size = await read_frame(reader)
                self.c.bytes_out += size
                self.take(given)
            if reply.kind is Kind.DELTA and reply.want:
                records, beats = gossip.pushed(self.view, reply.want, set())
                back = codec.encode(codec.push(records, beats))
                DEBUG["push"] = DEBUG.get("push", 0) + len(back)
                DEBUG["push-beats"] = DEBUG.get("push-beats", 0) + len(beats)
                DEBUG["push-records"] = DEBUG.get("push-records", 0) + len(records)
                self.c.bytes_in += len(back)
                writer.write(back)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()


MODES = ("full", "digest", "swim")
PORT = 0
DEBUG: dict[str, int] = {}
JOIN_CAP = 900.0  # seconds (--join-cap): a join not done by then is reported as such


def real_config(pki: Pki, root: Path, mode: str, seed: Sim) -> Path:
    """The real daemon's tyd.json: tests/tyd/helpers.py's builder, node00 at 127.0.0.10."""
    doc = raw_config(
        pki,
        0,
        PORT,
        root / "run",
        cluster=CLUSTER,
        subnet="127.0.0.0/8",
        seeds=(),
        heartbeat_seconds=HEARTBEAT,
        suspect_after_seconds=SUSPECT,
        remove_after_seconds=REMOVE,
        clock_skew_seconds=SKEW,
        gossip=mode,
        gossip_fanout=FANOUT,
        io_timeout_seconds=10.0,
        max_connections=4096,
        max_connections_per_source=64,
    )
    doc["seeds"] = [{"name": seed.name, "address": str(seed.address)}]
    path = root / f"tyd-{mode}.json"
    path.write_text(json.dumps(doc))
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def has_joined(root: Path) -> bool:
    """The daemon is a Philip: every member it knows has added it (status.json)."""
    try:
        return bool(json.loads((root / "run" / REAL_NAME / "status.json").read_text())["joined"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def live_count(root: Path) -> int:
    try:
        doc = json.loads((root / "run" / REAL_NAME / "map.json").read_text())
        return sum(1 for m in doc["members"] if m.get("state") == "alive")
    except (OSError, ValueError, KeyError, TypeError):
        return 0


async def run_one(
    pki: Pki, root: Path, sims: list[Sim], mode: str, window: float, join_cap: float
) -> dict[str, float]:
    """The daemon joins (timed, not measured: a newcomer's one-off work), then the steady
    state is measured over `window` seconds."""
    cluster = Cluster(sims, mode, pem_cert_der(pki.paths.node_cert(REAL_NAME)))
    servers = [
        await asyncio.start_server(
            cluster.serve, host=str(s.address), port=PORT, ssl=s.server_ctx, backlog=64
        )
        for s in sims
    ]
    cfg = real_config(pki, root, mode, sims[0])
    (root / "run" / REAL_NAME / "map.json").unlink(missing_ok=True)
    (root / "run" / REAL_NAME / "status.json").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tyd", "--config", str(cfg)],
        cwd=Path(__file__).resolve().parent.parent,
        stderr=subprocess.DEVNULL,
    )
    rng = random.Random(1)
    n = len(sims)
    started = time.monotonic()
    joined_after = float("nan")
    measuring = False
    cpu0 = t0 = 0.0
    c0 = Counters()
    try:
        while True:
            tick_start = time.monotonic()
            cluster.tick()
            late = tick_start - started > join_cap
            if joined_after != joined_after and (
                (has_joined(root) and live_count(root) >= n + 1) or late
            ):  # nan
                joined_after = tick_start - started if not late else float("inf")
            elif joined_after == joined_after and not measuring:  # one tick to settle
                measuring, t0, cpu0 = True, tick_start, cpu_seconds(proc.pid)
                c0 = dataclasses.replace(cluster.c)
                DEBUG.clear()
            if measuring and tick_start - t0 >= window:
                break
            if live_count(root) > 1:  # members tick at their own phases: spread the asks
                await asyncio.gather(
                    *(
                        cluster.ask(s, rng.uniform(0, HEARTBEAT * 0.8))
                        for s in rng.sample(sims, 1 if mode == "swim" else FANOUT)
                    )
                )
            await asyncio.sleep(max(0.0, HEARTBEAT - (time.monotonic() - tick_start)))
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(proc.pid) - cpu0
        return {
            "cpu_s_per_min": cpu / elapsed * 60,
            "in_Bps": (cluster.c.bytes_in - c0.bytes_in) / elapsed,
            "out_Bps": (cluster.c.bytes_out - c0.bytes_out) / elapsed,
            "conns_per_min": (cluster.c.conns - c0.conns) / elapsed * 60,
            "rss_mb": rss_mb(proc.pid),
            "join_s": joined_after,
            "live": live_count(root),
        }
    finally:
        proc.terminate()  # it LEAVEs: keep serving while it does
        for _ in range(300):
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        else:
            proc.kill()
            proc.wait()
        for s in servers:
            s.close()


def spread_rounds(n: int, mode: str, event: str, rng: random.Random) -> int:
    """Rounds until every member knows of a join or a leave (the epidemic of the exchange
    pattern above). Full gossip tells everyone directly: one round of n exchanges."""
    if mode == "full" or (mode == "swim" and event == "join"):
        return 1
    fanout = 1 if mode == "swim" else FANOUT
    knows = [False] * n
    for k in rng.sample(range(n), min(n, 1 if event == "join" else 2 * FANOUT)):
        knows[k] = True
    rounds = 0
    while not all(knows):
        rounds += 1
        before = knows[:]
        for i in range(n):
            for j in rng.sample(range(n), fanout):
                if before[i] or before[j]:  # push-pull: either side passes it on
                    knows[i] = knows[j] = True
    return rounds


def main() -> int:
    global PORT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,500,2000")
    ap.add_argument("--window", type=float, default=45.0, help="seconds measured per run")
    ap.add_argument("--modes", default=",".join(MODES), help="gossip modes to run, in order")
    ap.add_argument(
        "--join-cap",
        type=float,
        default=JOIN_CAP,
        help="seconds the daemon may take to join before the steady state is measured anyway",
    )
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    sizes = [int(x) for x in args.sizes.split(",")]
    PORT = random.randint(30000, 40000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lab-scale-") as tmp:
        root = Path(tmp)
        pki = Pki(root / "pki", KeyType.ED25519)
        now = dt.datetime.now(dt.UTC)
        pki.init_ca(CLUSTER, now, 2)
        pki.issue(Identity(REAL_NAME, f"{REAL_NAME}.lab.example", REAL), CLUSTER, now, 2)
        for n in sizes:
            made = time.monotonic()
            sims = make_members(root, pki, n)
            print(
                f"N={n}: {n} simulated members made in {time.monotonic() - made:.1f} s", flush=True
            )
            for mode in modes:
                r = asyncio.run(run_one(pki, root, sims, mode, args.window, args.join_cap))
                rows.append((n, mode, r))
                if os.environ.get("LAB_SCALE_DEBUG"):
                    print(DEBUG)
                DEBUG.clear()
                print(
                    f"  {mode:6s} cpu {r['cpu_s_per_min']:.2f} s/min "
                    f"({r['cpu_s_per_min'] / 60 * 100:.2f}% of a core), in "
                    f"{r['in_Bps'] / 1000:.1f} KB/s, out {r['out_Bps'] / 1000:.1f} KB/s, "
                    f"{r['conns_per_min']:.0f} conns/min, RSS {r['rss_mb']:.0f} MB, "
                    f"joined (map of {r['live']:.0f}) after {r['join_s']:.0f} s",
                    flush=True,
                )
    rng = random.Random(7)
    print(
        "\nspread to every member (model, push-pull with 3 random peers a tick, swim 1, "
        f"tick {HEARTBEAT:.0f} s; median of 5):"
    )
    for n in sizes:
        for mode in modes:
            for event in ("join", "leave"):
                rounds = statistics.median(spread_rounds(n, mode, event, rng) for _ in range(5))
                extra = (
                    f" ({n} exchanges by the {'joiner' if event == 'join' else 'leaver'})"
                    if rounds == 1
                    else ""
                )
                print(
                    f"  N={n:5d} {mode:6s} {event:5s} {rounds:.0f} rounds, "
                    f"{rounds * HEARTBEAT:.0f} s{extra}"
                )
    print(
        "\n| N | protocol | CPU s/min | % core | in KB/s | out KB/s | conns/min | RSS MB "
        "| daemon joined after s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, mode, r in rows:
        print(
            f"| {n} | {mode} | {r['cpu_s_per_min']:.2f} | {r['cpu_s_per_min'] / 0.6:.2f} | "
            f"{r['in_Bps'] / 1000:.1f} | {r['out_Bps'] / 1000:.1f} | "
            f"{r['conns_per_min']:.0f} | {r['rss_mb']:.0f} | {r['join_s']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
