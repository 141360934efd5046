"""Shared fixtures: the repo root, the default cluster, a PKI in a temp dir."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

from builder.config import load_cluster
from builder.model import Cluster
from builder.pki import Pki
from builder.pki import issue_all as pki_issue_all
from builder.render import OutFile, write_tree
from chaosnode.contract.node import NodeSettings
from chaosnode.paths import NODE_CERT_PATH, NODE_KEY_PATH, in_root

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def issue_all(cluster: Cluster, pki: Pki, now: dt.datetime = NOW) -> None:
    pki_issue_all(cluster, pki, now)


@pytest.fixture
def default_cluster() -> Cluster:
    return load_cluster(ROOT / "chaos.yaml")[0]


SHIPPED_MEASURED_BOOT = "  measured_boot: enforce"


def shipped_text(measured_boot: str) -> str:
    """The shipped chaos.yaml with security.measured_boot set to `measured_boot`: the tests of
    the TPM identity path use `off` (their clients send no quote; the shipped file enforces)."""
    text = (ROOT / "chaos.yaml").read_text()
    assert SHIPPED_MEASURED_BOOT in text
    return text.replace(SHIPPED_MEASURED_BOOT, f"  measured_boot: {measured_boot}")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the default chaos.yaml in an empty directory."""
    shutil.copy(ROOT / "chaos.yaml", tmp_path / "chaos.yaml")
    return tmp_path


def install_enrolled_identity(nodes_dir: Path, cluster: Cluster, pki: Pki) -> None:
    """What chaos-enroll.service leaves on each node at boot (its key, 0600, and its
    certificate), here from the build host's PKI: rendered trees carry no identity."""
    for node in cluster.nodes:
        cert, key = pki.node_files(node.name)
        write_tree(
            nodes_dir / node.name,
            {in_root(NODE_CERT_PATH): OutFile(cert), in_root(NODE_KEY_PATH): OutFile(key, 0o600)},
        )


def node_settings(**fields: str) -> NodeSettings:
    """A node.json record as chaos-build renders it, with the given fields changed."""
    base = {
        "name": "node01",
        "fqdn": "node01.lab.test",
        "address": "10.99.0.11",
        "mac": "52:54:00:00:00:01",
        "cluster": "chaos-lab",
        "scope": "all",
        "enroll_url": "",
        "push_url": "",
        "key_type": "ed25519",
        "attestation": "tpm",
    }
    return NodeSettings(**{**base, **fields})


def skip_fails_in_ci(report: pytest.TestReport, ci: bool | None = None) -> None:
    """With CI=true a test that would be skipped (a tool, root, a TPM missing) fails instead:
    CI sets everything up (make setup), so a skip there hides a test that never ran."""
    if ci is None:
        ci = os.environ.get("CI") == "true"
    if not (ci and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"CI=true: this test would have been skipped ({reason}); "
        "CI has every tool and runs as root (make setup)"
    )
