"""The TPM registry file and the pending list (no TPM)."""

from __future__ import annotations

import datetime as dt

import pytest

from builder.enroll.registry import (
    PendingStore,
    RegistryError,
    approve,
    load_registry,
)
from builder.errors import ConfigError

H1, H2, H3 = (f"sha256:{c * 64}" for c in "abc")


def test_missing_registry_is_empty(default_cluster, tmp_path):
    reg = load_registry(tmp_path / "tpm-registry.yaml", default_cluster)
    assert reg.nodes == {} and reg.node_for(H1) is None


def test_oversized_registry_is_refused(default_cluster, tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text("#" * (1024 * 1024 + 1))
    with pytest.raises(ConfigError, match="reg.yaml: .* more than the 1 MiB"):
        load_registry(path, default_cluster)


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("node01: [sha256:abc]\n", "reg.yaml:1: node01[0]", "is not an EK hash"),
        (
            f"node01:\n  - {H1}\nnode02:\n  - {H1}\n",
            "reg.yaml:4: node02[0]",
            "already registered for node01",
        ),
        (f"node09:\n  - {H1}\n", "reg.yaml:1: node09", "no such node in chaos.yaml"),
        ("node01: sha256:x\n", "reg.yaml:1: node01", "must be a list"),
        ("- a\n", "reg.yaml:1", "must be a mapping"),
        ("node01: [\n", "reg.yaml:", "not valid YAML"),
        (f"node01: &x\n  - {H1}\nnode02: *x\n", "reg.yaml:1: node01", "anchor &x is not allowed"),
    ],
)
def test_registry_problems_name_file_line_and_field(
    default_cluster, tmp_path, text, where, message
):
    path = tmp_path / "reg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_registry(path, default_cluster)
    got = str(err.value).replace(str(tmp_path) + "/", "")
    assert got.startswith(where) and message in got


def test_approve_keeps_the_admins_layout_and_comments(default_cluster, tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text(
        f"# our lab, reviewed in MR !12\nnode01:\n  - {H1}  # bench 3, left\nnode02: []\n"
    )
    assert approve(path, default_cluster, H2, "node01", "room 2")
    assert approve(path, default_cluster, H3, "node02")
    assert not approve(path, default_cluster, H3, "node02")  # already there
    assert path.read_text() == (
        f"# our lab, reviewed in MR !12\nnode01:\n  - {H1}  # bench 3,"
        f" left\n  - {H2}  # room 2\nnode02:\n  - {H3}\n"
    )
    reg = load_registry(path, default_cluster)
    assert reg.nodes == {"node01": (H1, H2), "node02": (H3,)}
    with pytest.raises(RegistryError, match="registered for node01"):
        approve(path, default_cluster, H1, "node03")
    with pytest.raises(RegistryError, match="no node named 'node9'"):
        approve(path, default_cluster, "sha256:" + "d" * 64, "node9")
    with pytest.raises(RegistryError, match="not an EK hash"):
        approve(path, default_cluster, "abc", "node01")


def test_approve_creates_the_file_with_a_header(default_cluster, tmp_path):
    path = tmp_path / "reg.yaml"
    approve(path, default_cluster, H1, "node03", "x")
    text = path.read_text()
    assert text.startswith("# TPM registry") and text.endswith(f"node03:\n  - {H1}  # x\n")


def test_pending_is_one_entry_per_machine_and_bounded(tmp_path):
    store = PendingStore(tmp_path / "pending.json", limit=3)
    t0 = dt.datetime(2026, 11, 27, 17, 0, tzinfo=dt.UTC)
    store.record(H1, "node01", ("52:54:00:99:00:11",), "10.99.0.11", t0)
    store.record(H1, "node01", ("52:54:00:99:00:11",), "10.99.0.11", t0 + dt.timedelta(minutes=1))
    [again] = store.entries()
    assert again.attempts == 2 and again.first_seen == "2026-11-27T17:00:00+00:00"
    for i in range(5):
        store.record(
            f"sha256:{i:064x}", "node02", (), "10.99.0.12", t0 + dt.timedelta(minutes=2 + i)
        )
    entries = store.entries()
    assert len(entries) == 3 and H1 not in {e.ek_hash for e in entries}
    assert store.remove(entries[0].ek_hash) is not None
    assert len(store.entries()) == 2


def test_pending_survives_a_line_cut_by_a_crash_and_stays_bounded(tmp_path):
    """The journal: a last line cut short is skipped and the next record starts afresh;
    past its size the file is compacted to the newest `limit` entries."""
    store = PendingStore(tmp_path / "pending.jsonl", limit=3)
    t0 = dt.datetime(2026, 11, 27, 17, 0, tzinfo=dt.UTC)
    store.record(H1, "node01", (), "10.99.0.11", t0)
    with open(store.path, "ab") as f:
        f.write(b'{"ek_hash": "sha256:00')  # the service died mid-write
    store.record(H1, "node01", (), "10.99.0.11", t0 + dt.timedelta(minutes=1))
    [entry] = store.entries()
    assert entry.attempts == 2
    for i in range(50):
        store.record(
            f"sha256:{i:064x}", "node02", (), "10.99.0.12", t0 + dt.timedelta(minutes=2 + i)
        )
    assert store.path.stat().st_size <= 3 * 1024 + 400  # compacted: 3 entries and a line
    assert [e.ek_hash for e in store.entries()] == [f"sha256:{i:064x}" for i in (47, 48, 49)]
