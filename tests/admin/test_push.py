"""Member pushes over mutual TLS, with certificates from a cluster CA made at run time: a node
pushes facts about itself only, Slurm's jobs come from the head only, and an oversized or
too-fast push is refused with its reason."""

from __future__ import annotations

import http.client
import ssl

import pytest

from builder.admin.events import Kind
from builder.admin.push import BURST
from chaosnode.enrollment import ProtocolError
from chaosnode.push import MAX_PUSH, PUSH_PATH, MemberPush


def test_a_node_pushes_its_own_join(push_lab):
    push_lab.push("node02", MemberPush("node02", "joined", peers=3))
    (e,) = push_lab.recorded
    assert (e.kind, e.node, e.value, e.address, e.mac) == (
        Kind.JOINED,
        "node02",
        3,
        "127.0.0.1",
        "52:54:00:99:00:12",
    )


def test_each_kind_of_push_is_recorded(push_lab):
    push_lab.push("node03", MemberPush("node03", "tyd_refusals", count=7, why="bad cert"))
    push_lab.push("node03", MemberPush("node03", "left", why="morning"))
    push_lab.push("node01", MemberPush("node01", "jobs", jobs=(("node02", 4), ("node03", 1))))
    got = [(e.kind, e.node, e.detail, e.value) for e in push_lab.recorded]
    assert got == [
        (Kind.TYD_REFUSALS, "node03", "bad cert", 7),
        (Kind.LEFT, "node03", "morning", 0),
        (Kind.JOBS, "node02", "from node01", 4),
        (Kind.JOBS, "node03", "from node01", 1),
    ]


def test_a_push_from_node02_about_node03_is_refused(push_lab):
    with pytest.raises(ProtocolError) as err:
        push_lab.push("node02", MemberPush("node03", "left", why="morning"))
    assert (
        err.value.code == "wrong_identity"
        and "node02 may push facts about node02" in err.value.reason
    )
    (e,) = push_lab.recorded
    assert (e.kind, e.node) == (Kind.PUSH_REFUSED, "node02") and "wrong_identity" in e.detail


def test_jobs_come_from_the_head_only(push_lab):
    with pytest.raises(ProtocolError, match="no head"):
        push_lab.push("node02", MemberPush("node02", "jobs", jobs=(("node02", 9),)))
    assert [e.kind for e in push_lab.recorded] == [Kind.PUSH_REFUSED]


def test_an_oversized_push_is_refused_unread(push_lab):
    status, body = push_lab.raw("node02", b"", length=MAX_PUSH + 1)
    assert status == 413 and b"too_large" in body
    assert "too_large" in push_lab.refusals()[0].detail


def test_a_malformed_push_is_refused(push_lab):
    status, body = push_lab.raw("node02", b'{"node": "node02", "kind": "reboot"}')
    assert status == 400 and b"malformed" in body


def test_a_node_that_pushes_too_fast_is_refused(push_lab):
    """The clock stands still: the bucket never refills, the push after the burst is
    refused (no timing involved)."""
    for _ in range(BURST):
        push_lab.push("node02", MemberPush("node02", "joined", peers=1))
    with pytest.raises(ProtocolError) as err:
        push_lab.push("node02", MemberPush("node02", "joined", peers=1))
    assert err.value.code == "rate_limited"
    push_lab.push("node03", MemberPush("node03", "joined", peers=1))  # others are not slowed
    assert len([e for e in push_lab.recorded if e.kind is Kind.JOINED]) == BURST + 1


def test_a_client_without_a_certificate_gets_no_hearing(push_lab):
    context = ssl.create_default_context(cafile=str(push_lab.files("node02")[2]))
    conn = http.client.HTTPSConnection("127.0.0.1", push_lab.port, context=context, timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        conn.request("POST", PUSH_PATH, MemberPush("node02", "joined").to_json())
        conn.getresponse().read()
    conn.close()
    assert push_lab.recorded == []


def test_the_record_round_trips():
    for push in (
        MemberPush("node02", "joined", peers=3),
        MemberPush("node02", "left", why="tyd"),
        MemberPush("node02", "tyd_refusals", count=2, why="x"),
        MemberPush("node01", "jobs", jobs=(("node02", 1),)),
    ):
        assert MemberPush.from_json(push.to_json()) == push


def test_the_node_side_command_line(push_lab, monkeypatch, capsys):
    """`python3 -m chaosnode.push` with the node's files (here: the run-time PKI's)."""
    from chaosnode import push as node_push

    cert, key, ca = push_lab.files("node01")
    monkeypatch.setattr(node_push, "NODE_CERT_PATH", str(cert))
    monkeypatch.setattr(node_push, "NODE_KEY_PATH", str(key))
    monkeypatch.setattr(node_push, "CA_CERT_PATH", str(ca))
    argv = ["--node", "node01", "--server", "127.0.0.1", "--port", str(push_lab.port)]
    assert node_push.main(["jobs", *argv, "--jobs", "node02=3"]) == 0
    assert [(e.kind, e.node, e.value) for e in push_lab.recorded] == [(Kind.JOBS, "node02", 3)]
    assert node_push.main(["left", *argv[:1], "node02", *argv[2:], "--why", "morning"]) == 1
    assert "not taken: wrong_identity" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        node_push.main(["jobs", *argv, "--jobs", "node02"])
