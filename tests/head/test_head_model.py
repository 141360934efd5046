"""The always-on head's settings: users (inline and from a users file), disks, login_from."""

from __future__ import annotations

import pytest
from chaostest import ROOT

from builder.config import load_cluster, load_cluster_text
from builder.errors import ConfigError
from builder.head.model import HeadModel
from builder.head.users import key_problem

ALICE = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINpshiLwdES2cJ64OSWbrCyHzqBvZr1TD/nGhj81jc1W alice@laptop"
)
HEAD = """cluster: {name: lab}
network: {subnet: 10.99.0.0/24}
login_from: [192.0.2.0/24]
nodes:
  - {name: head, mac: "52:54:00:99:00:10", address: 10.99.0.10, roles: [head],
     always_on: true, state_disk: /dev/disk/by-id/virtio-chaos-state}
  - {name: node02, mac: "52:54:00:99:00:12", address: 10.99.0.12}
"""


def test_todays_chaos_yaml_keeps_its_lab_pc_head(default_cluster):
    head = default_cluster.node("node01")
    assert not head.always_on and head.state_disk == ""
    assert default_cluster.always_on_head is None and default_cluster.section(HeadModel).users == ()


def test_an_always_on_head_with_users():
    text = HEAD + f'users:\n  - {{name: alice, uid: 1001, gid: 1001, ssh_keys: ["{ALICE}"]}}\n'
    cluster = load_cluster_text(text)
    assert cluster.always_on_head is not None and cluster.always_on_head.name == "head"
    assert [(u.name, u.uid, u.gid, u.ssh_keys) for u in cluster.section(HeadModel).users] == [
        ("alice", 1001, 1001, (ALICE,))
    ]


def test_users_file_adds_users_and_keys(tmp_path):
    (tmp_path / "users.passwd").write_text(
        f"# who\nbob:1002:1002:{ALICE}\nbob:1002:1002:{ALICE.replace('alice', 'bob2')}\n"
    )
    (tmp_path / "chaos.yaml").write_text(HEAD + "users_file: users.passwd\n")
    cluster, _ = load_cluster(tmp_path / "chaos.yaml")
    assert [(u.name, len(u.ssh_keys)) for u in cluster.section(HeadModel).users] == [("bob", 2)]


@pytest.mark.parametrize(
    "line, message",
    [
        ("bob:1002", "users.passwd:2: not a user line; write name:uid:gid:ssh-ed25519"),
        ("bob:1002:1002:ssh-ed25519 AAAA!! bob", "users.passwd:2: bob: the key's base64 part"),
        ("bob:999:999:" + ALICE, "bob of users_file: uid 999 is reserved"),
        ("alice:1003:1003:" + ALICE, "user alice is already declared as users[0]"),
    ],
)
def test_users_file_problems_name_their_file_and_line(tmp_path, line, message):
    (tmp_path / "users.passwd").write_text(f"# name:uid:gid:key\n{line}\n")
    (tmp_path / "chaos.yaml").write_text(
        HEAD + "users_file: users.passwd\nusers: [{name: alice, uid: 1001, gid: 1001}]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_cluster(tmp_path / "chaos.yaml")
    assert message in str(err.value)


def test_key_checks():
    assert key_problem(ALICE) is None
    assert "key type 'ssh-dss'" in (key_problem("ssh-dss AAAAB3NzaC1kc3M= x") or "")
    swapped = ALICE.replace("ssh-ed25519", "ecdsa-sha2-nistp256")
    assert "its data is a ssh-ed25519 key" in (key_problem(swapped) or "")


def test_invalid_fixtures_cover_the_head():
    names = {p.stem for p in (ROOT / "tests" / "invalid").glob("*.yaml")}
    assert {
        "head_without_disk",
        "state_disk_bad_path",
        "state_disk_on_lab_pc",
        "user_reserved_uid",
        "user_duplicate_uid",
        "user_duplicate_name",
        "user_bad_key",
    } <= names


def test_a_pasted_private_key_is_refused_and_never_echoed(tmp_path):
    """The key is made here, at run time: no private key is stored in the repo."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415

    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
    one_line = " ".join(pem.split())
    config = tmp_path / "chaos.yaml"
    config.write_text(
        HEAD + f'users:\n  - {{name: alice, uid: 1001, gid: 1001, ssh_keys: ["{one_line}"]}}\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_cluster(config)
    text = "\n".join(str(p) for p in refused.value.problems)
    assert f"{config}:" in text and "users[0].ssh_keys[0]: this is a private key" in text
    assert one_line.split()[4] not in text, "the key itself is never repeated back"
