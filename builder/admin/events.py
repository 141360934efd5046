"""The event record: one SQLite file under serve's run dir, written by one thread.

Recording never blocks serving: `record()` puts the event on a bounded queue and returns;
when the queue is full (the disk is slow or full) the event is counted as dropped and serve
goes on. A database that cannot be opened, is corrupt or whose disk is full turns the record
off with one clear message on serve's log; boots are answered all the same.
"""

from __future__ import annotations

import datetime as dt
import enum
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from chaosnode.enrollment import APPROVAL_PATH, FINISH_PATH, ProtocolError

from ..errors import ChaosError
from ..model import Cluster, Node

DB_NAME: Final = "events.sqlite"
QUEUE_MAX: Final = 10000
BATCH: Final = 500

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,          -- seconds since the epoch, UTC
    kind TEXT NOT NULL,
    node TEXT NOT NULL,       -- '' for a machine that is no node
    mac TEXT NOT NULL,
    address TEXT NOT NULL,
    detail TEXT NOT NULL,     -- a reason code, an answer, a peer
    value INTEGER NOT NULL    -- a count (jobs, refusals); 0 when none
);
CREATE INDEX IF NOT EXISTS events_t ON events (t);
CREATE INDEX IF NOT EXISTS events_node_t ON events (node, t);
"""


class Kind(enum.Enum):
    BOOT = "boot"  # a boot answer given (detail: cluster|disk, via dhcp/http)
    ENROLLED = "enrolled"  # a certificate issued
    REFUSED = "refused"  # an enrollment refused (detail: the refusal code)
    PENDING = "pending"  # a machine recorded as waiting for an admin
    WAKE = "wake"  # a Wake-on-LAN packet sent
    JOINED = "joined"  # pushed: tyd's map has this member (value: peers seen)
    LEFT = "left"  # pushed: the member left (detail: morning|tyd)
    TYD_REFUSALS = "tyd_refusals"  # pushed: tyd's refusal counter (value), detail: why
    JOBS = "jobs"  # pushed by the head: Slurm jobs running on node (value)
    PUSH_REFUSED = "push_refused"  # a push refused (detail: the reason code)


@dataclass(frozen=True)
class Event:
    t: dt.datetime
    kind: Kind
    node: str = ""
    mac: str = ""
    address: str = ""
    detail: str = ""
    value: int = 0

    def row(self) -> tuple[float, str, str, str, str, str, int]:
        return (
            self.t.timestamp(),
            self.kind.value,
            self.node,
            self.mac,
            self.address,
            self.detail,
            self.value,
        )


class EventDbError(ChaosError):
    """The event database cannot be used (corrupt, unreadable, disk full)."""


def _explain(path: Path, exc: sqlite3.Error) -> EventDbError:
    text = str(exc)
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        how = f"it is corrupt: move it aside (mv {path} {path}.broken) and serve starts a new one"
    elif "full" in text:
        how = "the disk is full: free space on its filesystem or pass --run-dir elsewhere"
    else:
        how = "check its permissions and filesystem"
    return EventDbError(f"event record {path}: {text}; {how}")


class Record(sqlite3.Connection):
    """A connection to the event record that knows its file (for the error messages)."""

    path: Path


def connect(path: Path, readonly: bool = False) -> Record:
    """Open (and on first use create) the database; EventDbError when it is unusable."""
    db: Record
    try:
        if readonly:
            if not path.exists():
                raise EventDbError(
                    f"event record {path}: no such file (serve writes it under "
                    "its --run-dir; pass --run-dir to point at it)"
                )
            db = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, factory=Record
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, factory=Record)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            # the writer checks once when serve starts; readers find damage as they read
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                db.close()
                raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
        db.path = path
        return db
    except sqlite3.Error as exc:
        raise _explain(path, exc) from None


def read(
    db: Record,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    node: str | None = None,
) -> list[Event]:
    """The events in [since, until), in time order (then in the order they were recorded)."""
    where: list[str] = ["1"]
    args: list[float | str] = []
    if since is not None:
        where.append("t >= ?")
        args.append(since.timestamp())
    if until is not None:
        where.append("t < ?")
        args.append(until.timestamp())
    if node is not None:
        where.append("node = ?")
        args.append(node)
    sql = (
        f"SELECT t, kind, node, mac, address, detail, value FROM events "
        f"WHERE {' AND '.join(where)} ORDER BY t, id"
    )
    try:
        rows = db.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise _explain(db.path, exc) from None
    return [
        Event(dt.datetime.fromtimestamp(t, dt.UTC), Kind(kind), n, m, a, d, v)
        for t, kind, n, m, a, d, v in rows
    ]


class EventLog:
    """The writer: one thread, a bounded queue, batches in one transaction each."""

    def __init__(self, path: Path, say: Callable[[str], None], queue_max: int = QUEUE_MAX) -> None:
        self.path, self.say = path, say
        self._queue: queue.Queue[Event | None] = queue.Queue(queue_max)
        self.dropped = 0
        self.written = 0
        self.broken: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EventLog:
        try:
            db = connect(self.path)
        except EventDbError as exc:
            self._disable(str(exc))
            return self
        self._thread = threading.Thread(
            target=self._write_loop, args=(db,), daemon=True, name="events"
        )
        self._thread.start()
        return self

    def record(self, event: Event) -> None:
        """Never blocks: a full queue or a broken record drops the event (counted)."""
        if self.broken is not None:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    @property
    def backlog(self) -> int:
        """Events queued and not yet written."""
        return self._queue.qsize()

    def flush(self) -> None:
        """Wait until every event queued so far is written (tests, bench, stop)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _disable(self, message: str) -> None:
        self.broken = message
        self.say(f"warning: {message}; serve goes on answering boots without recording events")

    def _batches(self) -> Iterator[list[Event]]:
        """Up to BATCH events at a time; ends at the stop mark (None)."""
        while True:
            batch: list[Event] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
            if item is None:
                self._queue.task_done()
                return

    def _write_loop(self, db: Record) -> None:
        try:
            for batch in self._batches():
                try:
                    if self.broken is None:
                        with db:
                            db.executemany(
                                "INSERT INTO events (t, kind, node, mac, address, "
                                "detail, value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [e.row() for e in batch],
                            )
                        self.written += len(batch)
                    else:
                        self.dropped += len(batch)
                except sqlite3.Error as exc:
                    self.dropped += len(batch)
                    self._disable(str(_explain(self.path, exc)))
                finally:
                    for _ in batch:
                        self._queue.task_done()
        finally:
            db.close()


# -- the recorder of this serve process --------------------------------------------
# serve's hooks (enrollment outcomes, Wake-on-LAN) reach the record through this one
# module-level slot rather than through new parameters of serve's functions: other work
# edits serve.py and the enrollment service in parallel, and a call here is one line there.
_active: EventLog | None = None


def activate(log: EventLog | None) -> None:
    global _active
    _active = log


def record(event: Event) -> None:
    """Record on the active EventLog; a no-op when serve runs without one (tests, CLI)."""
    log = _active
    if log is not None:
        log.record(event)


# -- the calls serve's parts make -----------------------------------------------------
PENDING_CODES: Final = ("unregistered", "awaiting_approval")


def enrollment_outcome(
    cluster: Cluster, path: str, source: str, node: str, refusal: ProtocolError | None
) -> None:
    """One enrollment request's outcome (builder/enroll/server.py): a certificate issued, a
    refusal with its code, and a machine left pending for an admin."""
    mac = next((n.mac for n in cluster.nodes if n.name == node), "")
    t = dt.datetime.now(dt.UTC)
    if refusal is None:
        if path in (FINISH_PATH, APPROVAL_PATH):
            record(Event(t, Kind.ENROLLED, node, mac, source))
        return
    record(
        Event(
            t,
            Kind.REFUSED,
            node if mac else "",
            mac,
            source,
            f"{refusal.code}: {refusal.reason}"[:300],
        )
    )
    if refusal.code in PENDING_CODES:
        record(Event(t, Kind.PENDING, node if mac else "", mac, source, refusal.code))


def woke(nodes: Sequence[Node], interface: str) -> None:
    """Wake-on-LAN packets sent (builder/serve.py's wake_lab)."""
    t = dt.datetime.now(dt.UTC)
    for n in nodes:
        record(Event(t, Kind.WAKE, n.name, n.mac, "", interface))
