"""Member pushes: a node tells serve facts about itself over mutual TLS, with its node
certificate (the one enrollment gave it). The record is declared once, here, for the node's
client and serve's server (builder/admin/push.py) alike.

    POST /member/push  MemberPush -> {"ok": true}, or a refusal (chaosnode.enrollment)
Kinds: joined (tyd's map has this node; peers: members it sees), left (why: morning|tyd),
tyd_refusals (count: tyd's refusal counter; why: the last one), jobs (from a head only:
Slurm's running jobs per node). Serve takes from a node only facts about that node.
Who pushes what (each bounded, never blocking the node's work, a failure said once):
chaosnode.pushwatch (joined, tyd_refusals: tyd's status file), chaosnode.pushjobs (the head's
jobs, on a timer), chaosnode.morning (left: morning). Stdlib only (runs under `python3 -I`):
    python3 -I -m chaosnode.push KIND [--peers N] [--why TEXT] [--count N] [--jobs NODE=N ...]
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .contract.node import NodeSettings
from .enrollment import CONTENT_TYPE, NODE_NAME, ProtocolError, _dump, _int, _load, _text
from .paths import CA_CERT_PATH, NODE_CERT_PATH, NODE_KEY_PATH

PUSH_PATH: Final = "/member/push"
MAX_PUSH: Final = 4096  # bytes of one push (a head's jobs of ~150 nodes)
MAX_JOBS_NODES: Final = 150
MAX_COUNT: Final = 10**9
KINDS: Final = ("joined", "left", "tyd_refusals", "jobs")
LEFT_WHY: Final = ("morning", "tyd", "shutdown")
FIELDS: Final = ("node", "kind")
OPTIONAL: Final = ("peers", "why", "count", "jobs")


@dataclass(frozen=True)
class MemberPush:
    node: str
    kind: str
    peers: int = 0
    why: str = ""
    count: int = 0
    jobs: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"node": self.node, "kind": self.kind}
        if self.kind == "joined":
            data["peers"] = self.peers
        elif self.kind == "left":
            data["why"] = self.why
        elif self.kind == "tyd_refusals":
            data |= {"count": self.count, "why": self.why}
        else:
            data["jobs"] = dict(self.jobs)
        return _dump(data)

    @classmethod
    def from_json(cls, body: bytes) -> MemberPush:
        if len(body) > MAX_PUSH:
            raise ProtocolError(
                "too_large", f"the push is {len(body)} bytes; the limit is {MAX_PUSH}"
            )
        data = _load(body, FIELDS, "the push", OPTIONAL)
        node = _text(data, "node", 63, NODE_NAME)
        kind = _text(data, "kind", 16)
        if kind not in KINDS:
            raise ProtocolError("malformed", f"kind {kind!r} is not one of {', '.join(KINDS)}")
        if kind == "joined":
            return cls(node, kind, peers=_int(data, "peers", 0, 65535))
        if kind == "left":
            why = _text(data, "why", 16)
            if why not in LEFT_WHY:
                raise ProtocolError("malformed", f"why {why!r} is not one of {', '.join(LEFT_WHY)}")
            return cls(node, kind, why=why)
        if kind == "tyd_refusals":
            return cls(
                node, kind, count=_int(data, "count", 0, MAX_COUNT), why=_text(data, "why", 80)
            )
        return cls(node, kind, jobs=_jobs(data))


def _jobs(data: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    jobs = data.get("jobs")
    if not isinstance(jobs, dict) or len(jobs) > MAX_JOBS_NODES:
        raise ProtocolError(
            "malformed", f"jobs must be an object of at most {MAX_JOBS_NODES} nodes"
        )
    out = []
    for name, n in sorted(jobs.items()):
        if (
            not NODE_NAME.match(name)
            or isinstance(n, bool)
            or not isinstance(n, int)
            or not 0 <= n <= 65535
        ):
            raise ProtocolError(
                "malformed",
                f"jobs[{name[:63]!r}] must be a node name with a whole number of jobs in 0..65535",
            )
        out.append((name, n))
    return tuple(out)


def send(
    host: str, port: int, push: MemberPush, cert: Path, key: Path, ca: Path, timeout: float = 10.0
) -> None:
    """One push with this node's certificate; ProtocolError when serve refuses it."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        body = push.to_json()
        conn.request("POST", PUSH_PATH, body, {"Content-Type": CONTENT_TYPE})
        reply = conn.getresponse()
        data = reply.read(MAX_PUSH)
        if reply.status != 200:
            raise ProtocolError.from_json(data, reply.status)
    finally:
        conn.close()


Send = Callable[["MemberPush"], None]
# what a push can fail with: serve's refusal, the network, TLS, a broken reply
FAILURES: Final = (ProtocolError, OSError, ssl.SSLError, http.client.HTTPException, ValueError)


def target(push_url: str) -> tuple[str, int] | None:
    """serve's push address from node.json's push_url ("" or anything else: none)."""
    url = urllib.parse.urlsplit(push_url)
    try:
        if url.scheme == "https" and url.hostname and url.port:
            return url.hostname, url.port
    except ValueError:
        pass
    return None


def sender(push_url: str, timeout: float = 10.0) -> Send | None:
    """A send() to serve with this node's certificate, or None when node.json names no
    push address (serve.address unset)."""
    where = target(push_url)
    if where is None:
        return None
    host, port = where

    def send_one(push: MemberPush) -> None:
        send(
            host, port, push, Path(NODE_CERT_PATH), Path(NODE_KEY_PATH), Path(CA_CERT_PATH), timeout
        )

    return send_one


def node_sender(node_json: Path, timeout: float = 10.0) -> tuple[str, Send | None]:
    """This node's name and its sender() from node.json; OSError or ValueError when
    node.json cannot be read."""
    node = NodeSettings.loads(node_json.read_text())
    return node.name, sender(node.push_url, timeout)


class Pusher:
    """Pushes of one program: a failure is said once (then nothing until a push goes
    through again, which is said too), never raised: the node's work goes on."""

    def __init__(self, send_one: Send, say: Callable[[str], None], failing: bool = False) -> None:
        self.send_one, self.say, self.failing = send_one, say, failing

    def push(self, push: MemberPush) -> bool:
        try:
            self.send_one(push)
        except FAILURES as exc:
            if not self.failing:
                self.say(f"chaos-push: {push.kind} not taken: {exc}; said once, retried quietly")
            self.failing = True
            return False
        if self.failing:
            self.say(f"chaos-push: serve takes pushes again ({push.kind})")
        self.failing = False
        return True


def _parse_jobs(items: list[str]) -> tuple[tuple[str, int], ...]:
    pairs = [i.partition("=") for i in items]
    return tuple((name, int(n)) for name, _, n in pairs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m chaosnode.push",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--node", required=True, help="this node's name")
    p.add_argument("--server", required=True, help="serve's address on the lab segment")
    p.add_argument("--port", type=int, default=8444)
    p.add_argument("--peers", type=int, default=0)
    p.add_argument("--why", default="")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--jobs", nargs="*", default=[], metavar="NODE=N")
    a = p.parse_args(argv)
    try:
        jobs = _parse_jobs(a.jobs)
    except ValueError:
        p.error(f"--jobs takes NODE=N pairs, not {' '.join(a.jobs)!r}")
    push = MemberPush(a.node, a.kind, a.peers, a.why, a.count, jobs)
    try:
        send(a.server, a.port, push, Path(NODE_CERT_PATH), Path(NODE_KEY_PATH), Path(CA_CERT_PATH))
    except (ProtocolError, OSError, ssl.SSLError) as exc:
        print(f"chaos-push: {a.kind} not taken: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
