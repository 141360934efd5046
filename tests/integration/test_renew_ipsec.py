"""Certificate renewal on a running node, in real charons (one per namespace): node01 and
node02 have an IKE_SA; node01 renews through the enrollment service (a software TPM on
loopback, the real client as the node runs it) and reloads charon with
`swanctl --load-creds`. The IKE_SA stays (same unique id, same SPIs) and a new IKE_SA, with
node03, authenticates node01 by its new certificate.

Why this works although the connections name node.pem: charon loads the new certificate and
key and unloads the old key (its file is gone); a connection's configured certificate without
a key is passed over for a loaded certificate with the same identity (the node's address)
that has one (strongSwan's credential_manager get_private).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import subprocess
from pathlib import Path

import pytest
from chaostest import ROOT, node_settings, shipped_text
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from netlab import CHARON, lab, need_root_tools, wait_for
from test_ipsec import Charon, render

from builder.config import load_cluster
from builder.enroll import registry, service
from builder.enroll import server as server_mod
from builder.enroll.swtpm import free_ports, start_swtpm
from builder.pki import pki_at

pytestmark = pytest.mark.integration

NODE_PYTHON = "/usr/bin/python3"
RENEW = (
    f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    "from chaosnode.renew import main; sys.exit(main())"
)


@pytest.fixture
def tools():
    need_root_tools("swanctl", "swtpm", str(CHARON))


def ike_line(charon: Charon, conn: str) -> str:
    """`peer-node02: #1, ESTABLISHED, IKEv2, SPI_i SPI_r`: unique id, state and SPIs."""
    sas = charon.swanctl("--list-sas", check=False).stdout
    found = re.search(rf"^{conn}: #\d+, \w+, IKEv2, \S+ \S+$", sas, re.M)
    return found.group(0) if found else ""


def certs_of(charon: Charon) -> list[bytes]:
    """Every certificate this charon holds (its own and the ones peers sent), as DER."""
    out = charon.swanctl("--list-certs", "--pem").stdout
    return [
        x509.load_pem_x509_certificate(m.encode()).public_bytes(serialization.Encoding.DER)
        for m in re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
    ]


def test_renewed_certificate_reloads_into_charon_without_tearing_down_the_ike_sa(
    tools, tmp_path: Path
):
    # measured boot off: this client sends no quote (the renewal of a measured node quotes
    # again: tests/enroll/test_measured_enroll.py)
    config = tmp_path / "chaos.yaml"
    config.write_text(shipped_text("off"))
    cluster, _ = load_cluster(config)
    out = render(tmp_path, cluster, "c")
    pki = pki_at(cluster, tmp_path / "pki" / "c")
    tpm = start_swtpm(tmp_path / "tpm", free_ports(2))
    settings = service.ServiceSettings(ipaddress.IPv4Address("127.0.0.1"), free_ports(1))
    server = server_mod.open_service(cluster, config, pki, settings)
    server.start_background()
    try:
        registry.approve(
            registry.registry_path(cluster, config),
            cluster,
            tpm.ek_hash(),
            "node01",
            "test TPM of node01",
        )
        with lab("renew") as the_lab:
            a, b, c = (cluster.nodes[i] for i in range(3))
            hosts = [the_lab.add(n.name, str(n.address)) for n in (a, b, c)]
            ca_, cb, cc = (
                Charon(the_lab, h, out / n.name, tmp_path)
                for h, n in zip(hosts, (a, b, c), strict=True)
            )
            for charon in (ca_, cb, cc):
                charon.load_all()
            hosts[0].ping(str(b.address))
            wait_for(
                lambda: "ESTABLISHED" in ike_line(ca_, f"peer-{b.name}"),
                20,
                f"IKE_SA {a.name} -> {b.name}",
            )
            before_a, before_b = ike_line(ca_, f"peer-{b.name}"), ike_line(cb, f"peer-{a.name}")

            swanctl = out / a.name / "etc/swanctl"
            old = x509.load_pem_x509_certificate((swanctl / "x509/node.pem").read_bytes())
            node_json = tmp_path / "node01.json"
            node_json.write_text(
                node_settings(name=a.name, address=str(a.address), enroll_url=server.url).dumps(
                    "test"
                )
            )
            # the node's client, as chaos-renew.service runs it, its swanctl aimed at node01's
            # charon (a unix socket, reachable from the host's namespace)
            r = subprocess.run(
                [
                    NODE_PYTHON,
                    "-I",
                    "-c",
                    RENEW,
                    "--force",
                    "--reload",
                    "charon",
                    "--node-json",
                    str(node_json),
                    "--ca",
                    str(swanctl / "x509ca/ca.pem"),
                    "--key",
                    str(swanctl / "private/node.key"),
                    "--cert",
                    str(swanctl / "x509/node.pem"),
                    "--crl",
                    str(swanctl / "x509crl/cluster.crl"),
                    "--tcti",
                    tpm.tcti,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **ca_.env},
            )
            assert r.returncode == 0, r.stdout + r.stderr
            assert "charon reloaded its credentials, SAs kept" in r.stdout
            new = x509.load_pem_x509_certificate((swanctl / "x509/node.pem").read_bytes())
            assert new.serial_number != old.serial_number
            assert new.public_key() != old.public_key()
            assert "unloaded private key" in ca_.log_text()

            # a new IKE_SA (node01 <-> node03) authenticates node01 by its new certificate
            hosts[0].ping(str(c.address))
            wait_for(
                lambda: "ESTABLISHED" in ike_line(cc, f"peer-{a.name}"),
                20,
                f"IKE_SA {a.name} -> {c.name} after the renewal",
            )
            held = certs_of(cc)
            der = serialization.Encoding.DER
            assert new.public_bytes(der) in held
            assert old.public_bytes(der) not in held
            assert f"authentication of '{a.address}' with ED25519 successful" in cc.log_text()
            # the IKE_SA from before the renewal is still the same one, on both sides
            assert ike_line(ca_, f"peer-{b.name}") == before_a
            assert ike_line(cb, f"peer-{a.name}") == before_b
            assert new.not_valid_after_utc > dt.datetime.now(dt.UTC)
    finally:
        server.stop()
        tpm.stop()
