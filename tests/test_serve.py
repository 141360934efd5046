"""chaos-build serve: the generated dnsmasq config (checked by dnsmasq itself) and, as root in
a namespace, the real dnsmasq + HTTP server answering TFTP and HTTP on the lab interface."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaostest import ROOT

from builder.model import ServeMode
from builder.serve import ServePlan, dnsmasq_conf

DNSMASQ = Path("/usr/sbin/dnsmasq")


def plan(mode: ServeMode, pxe: Path = Path("/srv/pxe")) -> ServePlan:
    return ServePlan("br0", ipaddress.IPv4Address("10.99.0.1"), pxe, 8080, mode)


def test_isolated_mode_gives_addresses_only_to_cluster_macs(default_cluster):
    conf = dnsmasq_conf(default_cluster, plan(ServeMode.ISOLATED))
    assert "dhcp-range=10.99.0.0,static,255.255.255.0,1h" in conf
    for node in default_cluster.nodes:
        assert f"dhcp-host={node.mac},{node.address},{node.name}" in conf
    assert "dhcp-boot=tag:ipxe,http://10.99.0.1:8080/boot.ipxe" in conf
    assert "interface=br0" in conf and "bind-interfaces" in conf and "port=0" in conf


def test_proxy_mode_leaves_addresses_to_the_campus_server(default_cluster):
    conf = dnsmasq_conf(default_cluster, plan(ServeMode.PROXY))
    assert "dhcp-range=10.99.0.0,proxy,255.255.255.0" in conf
    assert "static" not in conf and "dhcp-ignore=tag:!chaos" in conf


@pytest.mark.parametrize("mode", list(ServeMode))
def test_dnsmasq_accepts_the_config(default_cluster, tmp_path, mode):
    if not DNSMASQ.exists():
        pytest.skip("dnsmasq is not installed (make setup installs dnsmasq-base)")
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(dnsmasq_conf(default_cluster, plan(mode, tmp_path)))
    r = subprocess.run([str(DNSMASQ), "--test", f"--conf-file={conf}"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "syntax check OK" in r.stderr, r.stderr


@pytest.mark.integration
def test_serve_answers_http_and_tftp_on_its_interface_only(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    if not DNSMASQ.exists() or shutil.which("curl") is None:
        pytest.skip("dnsmasq and curl are needed (make setup installs them)")
    shutil.copy(ROOT / "chaos.yaml", tmp_path / "chaos.yaml")
    subprocess.run([sys.executable, "-m", "builder.cli", "pki", "init", "-c",
                    str(tmp_path / "chaos.yaml")], check=True, cwd=ROOT, capture_output=True)
    pxe = tmp_path / "pxe"
    pxe.mkdir()
    (pxe / "boot.ipxe").write_text("#!ipxe\n")
    (pxe / "undionly.kpxe").write_bytes(b"\x55" * 1000)
    ns = f"chaos-serve-{os.getpid()}"
    ip = ["ip", "-n", ns]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run([*ip, "link", "set", "lo", "up"], check=True)
        subprocess.run([*ip, "link", "add", "lab0", "type", "veth", "peer", "name", "cli0"],
                       check=True)
        subprocess.run([*ip, "addr", "add", "10.99.0.1/24", "dev", "lab0"], check=True)
        subprocess.run([*ip, "addr", "add", "10.99.0.2/24", "dev", "cli0"], check=True)
        subprocess.run([*ip, "link", "set", "lab0", "up"], check=True)
        subprocess.run([*ip, "link", "set", "cli0", "up"], check=True)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                 "builder.cli", "serve", "-c", str(tmp_path / "chaos.yaml"),
                                 "--pxe", str(pxe), "--interface", "lab0", "--mode",
                                 "isolated", "--run-dir", str(tmp_path / "run")],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        curl = ["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "5"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = subprocess.run([*curl, "http://10.99.0.1:8080/boot.ipxe"], capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.3)
        assert r.stdout == b"#!ipxe\n", r.stderr
        r = subprocess.run([*curl, "tftp://10.99.0.1/undionly.kpxe"], capture_output=True)
        assert r.returncode == 0 and r.stdout == b"\x55" * 1000, r.stderr
        # The enrollment service answers on serve.address with a cluster-CA certificate for
        # that address (curl checks it), and refuses a malformed request with a reason.
        r = subprocess.run([*curl, "--cacert", str(tmp_path / "pki" / "ca.pem"), "-X", "POST",
                            "-H", "Content-Type: application/json", "--data", "{}",
                            "https://10.99.0.1:8443/enroll/start"], capture_output=True)
        assert r.returncode == 0 and b'"error"' in r.stdout, r.stderr
        # Bound to lab0 only: nothing answers on loopback.
        r = subprocess.run([*curl, "http://127.0.0.1:8080/boot.ipxe"], capture_output=True)
        assert r.returncode != 0
        r = subprocess.run([*curl, "-k", "https://127.0.0.1:8443/"], capture_output=True)
        assert r.returncode != 0
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out.decode()
        assert b"serve stopped" in out and b"GET /boot.ipxe" in out
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        subprocess.run(["ip", "netns", "del", ns], check=False)
