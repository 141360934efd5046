"""The cluster's munge key (Slurm's secret) reaches a node only with its certificate, in the
enrollment service's reply to an attested node: swtpm on loopback, the node's client run as
on a node. What must hold, and what must NOT happen."""

from __future__ import annotations

import base64
import getpass
import os
import stat

from conftest import Lab, needs_swtpm, raw_post

from builder import mungekey
from chaosnode.enrollment import FINISH_PATH, FinishRequest, FinishResponse

pytestmark = needs_swtpm


def key_out(lab: Lab, node: str) -> list[str]:
    return [
        "--munge-key-out",
        str(lab.root / "run" / node / "munge.key"),
        "--munge-key-owner",
        getpass.getuser(),
    ]


def test_attested_node_gets_the_munge_key_into_its_own_0400_file(lab: Lab):
    key = mungekey.read(lab.pki.paths.root)  # made once beside the CA, 0600
    assert stat.S_IMODE(mungekey.key_path(lab.pki.paths.root).stat().st_mode) == 0o600
    r = lab.client(lab.tpm_a, "node01", "10.99.0.11", *key_out(lab, "node01"))
    assert r.returncode == 0, r.stderr
    written = lab.root / "run/node01/munge.key"
    assert written.read_bytes() == key
    assert stat.S_IMODE(written.stat().st_mode) == 0o400
    assert written.stat().st_uid == os.getuid()
    # nothing the client prints carries the key
    for text in (r.stdout, r.stderr):
        assert base64.b64encode(key).decode() not in text and key.hex() not in text


def test_unregistered_machine_gets_no_munge_key(lab: Lab):
    key = mungekey.read(lab.pki.paths.root)
    r = lab.client(lab.tpm_b, "node02", "10.99.0.12", "--max-time", "1.5", *key_out(lab, "node02"))
    assert r.returncode == 1
    assert "not registered as node02" in r.stderr
    assert not (lab.root / "run/node02").exists()
    assert base64.b64encode(key).decode() not in r.stderr
    # a made-up finish (no activation) is refused without the key in the refusal
    status, body = raw_post(lab, FINISH_PATH, FinishRequest("0" * 32, "0" * 64).to_json())
    assert status >= 400 and "munge_key" not in body
    assert base64.b64encode(key).decode() not in str(body)


def test_munge_key_is_never_regenerated(lab: Lab):
    root = lab.pki.paths.root
    first = mungekey.read(root)
    assert mungekey.ensure(root) is False
    assert mungekey.read(root) == first


def test_finish_response_never_shows_the_key():
    reply = FinishResponse(
        "cert", "ca", "crl", "2026-01-01T00:00:00+00:00", munge_key=b"\x01" * 128
    )
    assert FinishResponse.from_json(reply.to_json()).munge_key == b"\x01" * 128
    assert "AQEB" not in repr(reply) and "\\x01" not in repr(reply)
    without = FinishResponse("cert", "ca", "crl", "2026-01-01T00:00:00+00:00")
    assert b"munge_key" not in without.to_json()
    assert FinishResponse.from_json(without.to_json()).munge_key == b""
