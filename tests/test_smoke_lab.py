"""The smoke lab's reading of a guest's console, without QEMU: the result line, a QEMU that
died first, and a timeout, each as a typed error naming the console file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from chaostest import ROOT

from builder.config import load_cluster
from builder.errors import ChaosError
from builder.reference import plain
from builder.smoke.lab import Guest
from builder.smoke.runner import lab_cluster, rogue_cluster

READY = "CHAOS-READY node=node01 addr=10.0.0.11 nft=ok charon=ok tyd=ok disks=none"


def guest(tmp_path: Path, console: str, proc: subprocess.Popen[bytes] | None) -> Guest:
    g = Guest("node01", "52:54:00:00:00:01", tmp_path, tmp_path / "disk.img", proc=proc)
    g.console.write_text(console)
    return g


def test_result_line_is_read_from_the_console(tmp_path: Path) -> None:
    g = guest(tmp_path, f"[  3.0] booting\r\n{READY}\r\nmore\n", None)
    assert g.result() == READY
    assert g.wait_result(0) == READY


def test_qemu_that_exited_before_the_line_is_an_error(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    g = guest(tmp_path, "[  3.0] booting\n", proc)
    with pytest.raises(ChaosError, match=r"node01: QEMU exited \(0\) before the self-check"):
        g.result()


def test_no_line_in_time_names_the_console(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        g = guest(tmp_path, "[  3.0] booting\n", proc)
        assert g.result() is None
        with pytest.raises(ChaosError, match=r"no CHAOS-READY/FAILED line within 0s; see "):
            g.wait_result(0)
    finally:
        proc.kill()
        proc.wait()


def test_lab_cluster_file_round_trips_with_the_labs_pki_registry_and_server(tmp_path):
    """serve runs from the lab's own cluster file: PKI and TPM registry in the results."""
    cluster = load_cluster(ROOT / "chaos.yaml")[0]
    lab = lab_cluster(cluster, tmp_path)
    assert lab.security.pki_dir == str((tmp_path / "pki").resolve())
    assert lab.security.tpm_registry == str((tmp_path / "tpm-registry.yaml").resolve())
    assert lab.serve.address == cluster.serve.address
    (tmp_path / "chaos.yaml").write_text(yaml.safe_dump(plain(lab), sort_keys=False))
    assert load_cluster(tmp_path / "chaos.yaml")[0] == lab
    with_stranger, rogue = rogue_cluster(lab, None)
    assert rogue.address not in {n.address for n in cluster.nodes}
    assert rogue.address not in (lab.serve.address, lab.network.gateway)
    assert rogue in with_stranger.nodes
