"""The smoke lab's reading of a guest's console, without QEMU: the result line, a QEMU that
died first, and a timeout, each as a typed error naming the console file."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from chaostest import ROOT

from builder.config import load_cluster
from builder.errors import ChaosError
from builder.reference import plain
from builder.security.model import SecurityModel
from builder.smoke.lab import Guest
from builder.smoke.runner import Smoke, lab_cluster, rogue_cluster
from builder.smoke.scenario import load_scenario

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
    assert lab.section(SecurityModel).security.pki_dir == str((tmp_path / "pki").resolve())
    assert lab.section(SecurityModel).security.tpm_registry == str(
        (tmp_path / "tpm-registry.yaml").resolve()
    )
    assert lab.serve.address == cluster.serve.address
    (tmp_path / "chaos.yaml").write_text(yaml.safe_dump(plain(lab), sort_keys=False))
    assert load_cluster(tmp_path / "chaos.yaml")[0] == lab
    with_stranger, rogue = rogue_cluster(lab, None)
    assert rogue.address not in {n.address for n in cluster.nodes}
    assert rogue.address not in (lab.serve.address, lab.network.gateway)
    assert rogue in with_stranger.nodes


def test_a_wait_ends_at_once_when_something_the_lab_needs_has_died(tmp_path: Path) -> None:
    """A guest's wait asks its watch on every turn: a dead serve ends it with serve's error
    instead of the wait running out."""

    def dead_serve() -> None:
        raise ChaosError("serve exited with code 1: chaos-build serve")

    g = guest(tmp_path, "[  3.0] booting\n", None)
    g.watch = dead_serve
    with pytest.raises(ChaosError, match="serve exited with code 1"):
        g.wait_result(600)
    with pytest.raises(ChaosError, match="serve exited with code 1"):
        g.wait_text("DAY-OS-OK", 600)


@pytest.mark.integration
def test_smoke_ends_with_serves_own_error_when_serve_dies(tmp_path: Path) -> None:
    """`chaos-build smoke` with a serve that cannot start (here: the artifacts it must
    serve are missing) ends within seconds with serve's own error, not a hang."""
    if os.geteuid() != 0 or shutil.which("dnsmasq") is None or shutil.which("tcpdump") is None:
        pytest.skip("needs root (a network namespace), dnsmasq and tcpdump")
    scenario = load_scenario(ROOT / "tests/scenarios/default/scenario.yaml")
    smoke = Smoke(scenario, "pxe", tmp_path / "results", tmp_path / "cache", None)
    smoke.results.mkdir(parents=True)
    smoke.config.write_text(yaml.safe_dump(plain(smoke.cluster), sort_keys=False))
    smoke.out = tmp_path / "out"
    (smoke.out / "pxe").mkdir(parents=True)  # a build that made nothing
    began = time.monotonic()
    try:
        with pytest.raises(ChaosError) as failed:
            smoke.start_lab()
    finally:
        smoke.segment.down()
    took = time.monotonic() - began
    print(f"smoke failed after {took:.1f} s: {failed.value}")
    assert "serve exited with code 1" in str(failed.value)
    assert "missing" in str(failed.value), "serve's own message, from its log"
