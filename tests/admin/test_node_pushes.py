"""The node's pushers against a real push server (mutual TLS, run-time CA): tyd's status file
becomes `joined` and `tyd_refusals` pushes (chaosnode.pushwatch), Slurm's view on the head
becomes `jobs` pushes of changes only (chaosnode.pushjobs), the morning says `left: morning`
(chaosnode.morning); each failure is said once and holds nothing up."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from chaostest import node_settings

from builder.admin.events import Kind
from chaosnode import pushjobs, pushwatch
from chaosnode.morning import NodeActions
from chaosnode.push import MAX_JOBS_NODES, MAX_PUSH, MemberPush, Pusher, send, sender, target
from tyd.member import Member, State
from tyd.membership import View
from tyd.status import document


def tyd_status(
    node: str = "node02",
    joined: bool = True,
    others: tuple[str, ...] = ("node01",),
    incarnation: int = 1000,
    **counters: int,
) -> dict[str, object]:
    """A status document as tyd writes it (tyd/status.py), not one typed by hand."""

    def member(name: str, i: int, epoch: int) -> View:
        return View(
            Member(
                name, ipaddress.IPv4Address(f"10.99.0.{11 + i}"), "ab" * 32, State.ALIVE, epoch, 3
            ),
            "alive",
            0.5,
        )

    rows = [member(node, 1, incarnation), *(member(o, 2 + i, 7) for i, o in enumerate(others))]
    base = {"refused": 0, "forged": 0, "stale": 0, "msgs_in": 40}
    return document(
        "chaos-lab", node, "10.99.0.12", joined, 12.0, 5, rows, {**base, **counters}, 0.0
    )


def pusher_to(push_lab, node: str, said: list[str]) -> Pusher:
    return Pusher(lambda p: send("127.0.0.1", push_lab.port, p, *push_lab.files(node)), said.append)


def pushed(push_lab) -> list[tuple[Kind, str, str, int]]:
    return [(e.kind, e.node, e.detail, e.value) for e in push_lab.recorded]


# -- chaosnode.pushwatch ------------------------------------------------------------------


def run_watch(
    push_lab,
    path: Path,
    docs: list[dict[str, object]],
    said: list[str],
    node: str = "node02",
    step: float = 40.0,
) -> None:
    """The real loop, one look per document, the clock moving `step` seconds a look."""
    clock = iter(float(i) * step for i in range(10_000))
    pusher = pusher_to(push_lab, node, said)
    looks = iter(docs)

    def sleep(_: float) -> None:
        try:
            path.write_text(json.dumps(next(looks)))
        except StopIteration:
            raise KeyboardInterrupt from None

    sleep(0)
    with pytest.raises(KeyboardInterrupt):
        pushwatch.watch(node, pusher, path, clock=lambda: next(clock), sleep=sleep)


def test_joined_goes_once_per_tyd_run_with_the_members_it_sees(push_lab, tmp_path):
    said: list[str] = []
    docs = [
        tyd_status(joined=False, others=()),
        tyd_status(others=("node01", "node03")),
        tyd_status(others=("node01", "node03", "node04")),  # no second push
        tyd_status(joined=False, incarnation=2000),  # tyd restarted
        tyd_status(incarnation=2000),
    ]
    run_watch(push_lab, tmp_path / "status.json", docs, said)
    assert pushed(push_lab) == [
        (Kind.JOINED, "node02", "tyd", 2),
        (Kind.JOINED, "node02", "tyd", 1),
    ]
    assert said == []


def test_refusals_go_when_they_change_with_the_reason_that_grew(push_lab, tmp_path):
    docs = [
        tyd_status(),
        tyd_status(forged=2, refused_bad_cert=2),
        tyd_status(forged=2, refused_bad_cert=2),  # unchanged: nothing
        tyd_status(forged=2, refused_bad_cert=2, refused=5),
    ]
    run_watch(push_lab, tmp_path / "status.json", docs, [])
    assert pushed(push_lab)[1:] == [
        (Kind.TYD_REFUSALS, "node02", "bad_cert", 2),
        (Kind.TYD_REFUSALS, "node02", "connection", 7),
    ]


def test_refusals_are_pushed_at_most_every_30_seconds(push_lab, tmp_path):
    docs = [tyd_status(refused=n) for n in range(1, 8)]  # a flood: a change every look
    run_watch(push_lab, tmp_path / "status.json", docs, [], step=10.0)
    counts = [v for k, _, _, v in pushed(push_lab) if k is Kind.TYD_REFUSALS]
    assert counts == [1, 4, 7], "one look in three (10 s apart) may push"


def test_a_push_from_another_nodes_certificate_is_refused_and_said_once(push_lab, tmp_path):
    """node03's certificate pushing node02's facts (a misrendered node, or an attacker with
    one member's key): serve refuses every try; the node says so once and keeps going."""
    said: list[str] = []
    docs = [tyd_status(refused=n) for n in range(1, 6)]
    pusher = pusher_to(push_lab, "node03", said)
    path = tmp_path / "status.json"
    clock = iter(float(i) * 400 for i in range(100))  # past every pause
    for doc in docs:
        path.write_text(json.dumps(doc))
        pushwatch.watch("node02", pusher, path, once=True, clock=lambda: next(clock))
    refused = [e for e in push_lab.recorded if e.kind is Kind.PUSH_REFUSED]
    assert refused and all("wrong_identity" in e.detail for e in refused)
    assert len(said) == 1 and "not taken: wrong_identity" in said[0]


def test_a_serve_that_is_down_is_retried_after_growing_pauses(tmp_path):
    tries: list[float] = []
    now = [0.0]

    def down(push: MemberPush) -> None:
        tries.append(now[0])
        raise ConnectionRefusedError(111, "Connection refused")

    said: list[str] = []
    path = tmp_path / "status.json"
    path.write_text(json.dumps(tyd_status()))

    def sleep(s: float) -> None:
        now[0] += s
        if now[0] > 700:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pushwatch.watch(
            "node02", Pusher(down, said.append), path, clock=lambda: now[0], sleep=sleep
        )
    assert tries == [0.0, 10.0, 30.0, 70.0, 150.0, 310.0, 610.0]
    assert len(said) == 1 and "Connection refused" in said[0]


@pytest.mark.parametrize(
    "text",
    ["", "{}", "[]", '{"node": "node02", "members": 3, "counters": {}}', "{" * 100_000, "\xff"],
)
def test_a_status_file_that_is_not_tyds_is_ignored(tmp_path, text):
    path = tmp_path / "status.json"
    path.write_text(text, errors="surrogateescape")
    assert pushwatch.read_status(path) is None
    assert pushwatch.read_status(tmp_path / "absent.json") is None


def test_without_a_push_address_the_watch_says_so_and_ends(tmp_path, capsys):
    node_json = tmp_path / "node.json"
    node_json.write_text(node_settings(push_url="").dumps("test"))
    assert pushwatch.main(["--node-json", str(node_json), "--once"]) == 0
    assert "no push address" in capsys.readouterr().err


# -- chaosnode.push ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, want",
    [
        ("https://10.99.0.1:8444", ("10.99.0.1", 8444)),
        ("", None),
        ("http://10.99.0.1:8444", None),
        ("https://10.99.0.1", None),
        ("https://10.99.0.1:99999", None),
        ("https://:8444", None),
    ],
)
def test_the_push_address_comes_from_node_json(url, want):
    assert target(url) == want
    assert (sender(url) is None) == (want is None)


def test_the_rendered_node_json_names_serves_push_port(default_cluster):
    from builder.views import node_settings as rendered

    node = rendered(default_cluster, default_cluster.nodes[0])
    assert (
        node.push_url == f"https://{default_cluster.serve.address}:"
        f"{default_cluster.serve.push_port}"
    )


# -- chaosnode.pushjobs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostlist, want",
    [
        ("node01", ["node01"]),
        ("node[01-03]", ["node01", "node02", "node03"]),
        ("node[08-10,12],head", ["node08", "node09", "node10", "node12", "head"]),
        ("pc[1-2]x", ["pc1x", "pc2x"]),
        ("node[1-2],pc[3]", ["node1", "node2", "pc3"]),
    ],
)
def test_slurm_hostlists_expand(hostlist, want):
    assert pushjobs.expand(hostlist) == want


@pytest.mark.parametrize(
    "bad", ["node[3-1]", "node[a-b]", "node[1-999999999]", "node]", "Node01", "node[01", "../etc"]
)
def test_what_is_no_hostlist_is_refused(bad):
    with pytest.raises(ValueError):
        pushjobs.expand(bad)


def test_jobs_per_node_and_only_changes_are_pushed():
    jobs = pushjobs.running("node[01-02]\nnode02\n\nnode03\n")
    assert jobs == {"node01": 1, "node02": 2, "node03": 1}
    assert pushjobs.changes({"node01": 1, "node04": 2}, jobs) == {
        "node02": 2,
        "node03": 1,
        "node04": 0,
    }


def test_a_big_lab_is_cut_into_pushes_inside_the_bounds():
    names = {f"n{'x' * 55}{i:04d}": 65535 for i in range(500)}
    out = pushjobs.pushes("node01", names)
    assert sum(len(p.jobs) for p in out) == 500 and len(out) > 500 // MAX_JOBS_NODES
    assert all(len(p.to_json()) <= MAX_PUSH and len(p.jobs) <= MAX_JOBS_NODES for p in out)
    assert all(MemberPush.from_json(p.to_json()) == p for p in out)


def test_the_heads_timer_pushes_changes_through_serve(push_lab, tmp_path):
    state, said = tmp_path / "push-jobs.json", []
    slurm = iter(["node[02-03]\nnode02\n", "node[02-03]\nnode02\n", "node03\n"])

    def tick() -> int:
        return pushjobs.tick(
            "node01",
            state,
            lambda f: Pusher(
                lambda p: send("127.0.0.1", push_lab.port, p, *push_lab.files("node01")),
                said.append,
                f,
            ),
            ask=lambda: next(slurm),
            say=said.append,
        )

    assert tick() == tick() == tick() == 0
    assert pushed(push_lab) == [
        (Kind.JOBS, "node02", "from node01", 2),
        (Kind.JOBS, "node03", "from node01", 1),
        (Kind.JOBS, "node02", "from node01", 0),
    ]
    assert said == []


def test_a_compute_node_pushing_jobs_is_refused_said_once_and_retried(push_lab, tmp_path):
    state, said = tmp_path / "push-jobs.json", []
    for _ in range(3):
        pushjobs.tick(
            "node02",
            state,
            lambda f: Pusher(
                lambda p: send("127.0.0.1", push_lab.port, p, *push_lab.files("node02")),
                said.append,
                f,
            ),
            ask=lambda: "node02\n",
            say=said.append,
        )
    assert [e.kind for e in push_lab.recorded] == [Kind.PUSH_REFUSED] * 3
    assert len(said) == 1 and "no head" in said[0]


def test_slurm_that_does_not_answer_is_said_once(tmp_path):
    state, said = tmp_path / "push-jobs.json", []

    def broken() -> str:
        raise OSError("squeue -h -t running -o %N: exit 1 slurm_load_jobs error")

    for _ in range(3):
        pushjobs.tick(
            "node01",
            state,
            lambda f: pytest.fail("no push without Slurm's view"),
            ask=broken,
            say=said.append,
        )
    assert len(said) == 1 and "slurm_load_jobs" in said[0]


# -- chaosnode.morning ---------------------------------------------------------------------


def test_the_morning_tells_serve_it_left(push_lab, tmp_path, monkeypatch):
    from chaosnode import push as node_push

    cert, key, ca = push_lab.files("node02")
    monkeypatch.setattr(node_push, "NODE_CERT_PATH", str(cert))
    monkeypatch.setattr(node_push, "NODE_KEY_PATH", str(key))
    monkeypatch.setattr(node_push, "CA_CERT_PATH", str(ca))
    node_json = tmp_path / "node.json"
    node_json.write_text(
        node_settings(name="node02", push_url=f"https://127.0.0.1:{push_lab.port}").dumps("test")
    )
    assert NodeActions().tell_left("node02", node_json) == "serve told: left (morning)"
    assert pushed(push_lab) == [(Kind.LEFT, "node02", "morning", 0)]


def test_the_morning_goes_on_when_serve_is_not_there(tmp_path):
    node_json = tmp_path / "node.json"
    node_json.write_text(node_settings(push_url="https://127.0.0.1:9").dumps("test"))
    told = NodeActions().tell_left("node01", node_json)
    assert told.startswith("serve not told (") and told.endswith("going on")
    node_json.write_text(node_settings(push_url="").dumps("test"))
    assert "no push address" in NodeActions().tell_left("node01", node_json)
    assert "cannot read" in NodeActions().tell_left("node01", tmp_path / "absent.json")
