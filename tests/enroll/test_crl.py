"""A running node keeps its CRL current: it fetches the cluster's CRL from the enrollment
service (server checked against the CA) and installs it only if the cluster CA signed it and
it is newer. The client runs under Debian's /usr/bin/python3, as on a node."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from pathlib import Path

import pytest
from chaostest import ROOT
from conftest import NODE_PYTHON, Lab, needs_swtpm

from builder.model import KeyType
from builder.pki import Identity, Pki
from chaosnode.crl import CrlError, newer


def crl_client(lab: Lab, dest: Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            NODE_PYTHON,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from chaosnode.crl import main; raise SystemExit(main(sys.argv[1:]))",
            "--url",
            url or lab.url,
            "--ca",
            str(lab.ca_file),
            "--crl",
            str(dest),
            "--no-reload",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_swtpm
def test_node_installs_a_newer_crl_and_keeps_a_current_one(lab: Lab, tmp_path: Path):
    dest = tmp_path / "cluster.crl"
    dest.write_bytes(lab.pki.crl_pem())
    r = crl_client(lab, dest)
    assert r.returncode == 0 and "CRL is current" in r.stdout, r.stderr
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    lab.pki.issue(
        Identity("node02", "node02.chaos.lan", ipaddress.IPv4Address("10.99.0.12")),
        "chaos-lab",
        later,
        1,
    )
    [serial] = lab.pki.revoke("node02", later, 1)
    r = crl_client(lab, dest)
    assert r.returncode == 0 and "installed a newer CRL" in r.stdout, r.stderr
    assert dest.read_bytes() == lab.pki.crl_pem()
    assert str(serial) in Path(lab.pki.paths.revoked).read_text()


@needs_swtpm
def test_node_refuses_a_server_outside_the_cluster_ca(lab: Lab, tmp_path: Path):
    dest = tmp_path / "cluster.crl"
    dest.write_bytes(b"ours")
    host, port = lab.server.server_address[:2]
    r = crl_client(lab, dest, f"https://127.0.0.2:{port}")  # certificate is for another name
    assert r.returncode == 1 and "keeping the CRL we have" in r.stderr
    assert dest.read_bytes() == b"ours"


@pytest.mark.parametrize("key_type", list(KeyType))
def test_a_crl_from_another_ca_or_an_older_one_is_not_installed(tmp_path: Path, key_type):
    """The foreign CA has the same name: only the signature tells them apart."""
    ours = Pki(tmp_path / "ours", key_type)
    now = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    ours.init_ca("lab", now, 30)
    current = ours.crl_pem()
    foreign = Pki(tmp_path / "foreign", key_type)
    foreign.init_ca("lab", now, 30)
    with pytest.raises(CrlError, match="not signed by the cluster CA"):
        newer(foreign.crl_pem(), current, ours.paths.ca_cert.read_bytes())
    ours.write_crl(now - dt.timedelta(days=1), 30)
    assert not newer(ours.crl_pem(), current, ours.paths.ca_cert.read_bytes())
    ours.write_crl(now + dt.timedelta(days=1), 30)
    assert newer(ours.crl_pem(), current, ours.paths.ca_cert.read_bytes())
    with pytest.raises(CrlError, match="not a PEM CRL"):
        newer(b"garbage", current, ours.paths.ca_cert.read_bytes())
