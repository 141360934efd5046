"""Fixtures of the enrollment tests: software TPMs on loopback and the service in-process."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import ipaddress
import json
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from chaostest import ROOT, shipped_text

from builder.config import load_cluster
from builder.enroll import registry, service
from builder.enroll import server as server_mod
from builder.enroll.registry import approve
from builder.enroll.swtpm import SoftTpm, free_ports, start_swtpm
from builder.model import Cluster
from builder.pki import Pki, pki_at
from chaosnode.enrollment import ApprovalRequest, FinishRequest, StartRequest

NODE_PYTHON = "/usr/bin/python3"
# as on the node: isolated mode (no PYTHONPATH, no user site); the image installs chaosnode
# into dist-packages, here the worktree goes first on sys.path
NODE_BOOTSTRAP = (
    f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
    "from chaosnode.enroll import main; sys.exit(main())"
)

NODE_ENV = {"PATH": "/usr/bin:/bin"}

needs_swtpm = pytest.mark.skipif(
    shutil.which("swtpm") is None, reason="swtpm is not installed (apt-get install swtpm)"
)


def tpm_ek_hash(tpm: SoftTpm) -> str:
    return tpm.ek_hash()


def persistent_handles(tpm: SoftTpm) -> str:
    r = subprocess.run(
        ["tpm2_getcap", "-T", f"swtpm:host=127.0.0.1,port={tpm.port}", "handles-persistent"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return r.stdout


APPROVAL_NODE = ("node03", "10.99.0.13")  # the lab's PC without a TPM


def write_lab_config(root: Path, measured_boot: str = "off") -> Path:
    """The default chaos.yaml, with node03 as a PC without a TPM (attestation: approval) and
    measured boot `off` unless asked: the other tests are the TPM identity path, whose
    clients send no quote (the shipped file enforces; test_measured_enroll asks its mode)."""
    text = shipped_text(measured_boot)
    node03 = "  - name: node03\n"
    assert node03 in text
    config = root / "chaos.yaml"
    config.write_text(text.replace(node03, node03 + "    attestation: approval\n"))
    return config


@dataclass
class Lab:
    root: Path
    config: Path
    cluster: Cluster
    pki: Pki
    server: server_mod.EnrollServer
    tpm_a: SoftTpm  # registered for node01
    tpm_b: SoftTpm  # unknown
    ek_a: str
    bodies: list[bytes] = field(default_factory=list)  # every request body the server read
    url_override: str | None = None  # point the client elsewhere (a dead port)

    @property
    def url(self) -> str:
        return self.url_override or self.server.url

    @property
    def ca_file(self) -> Path:
        return self.pki.paths.ca_cert

    @property
    def registry(self) -> Path:
        return registry.registry_path(self.cluster, self.config)

    def client(
        self,
        tpm: SoftTpm,
        node: str = "node01",
        address: str = "10.99.0.11",
        *extra: str,
        ca: Path | None = None,
        out: Path | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """The node's client as the node runs it: /usr/bin/python3 -I, Debian's packages."""
        argv = self.client_argv(node, address, "--tcti", tpm.tcti, *extra, ca=ca, out=out)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=NODE_ENV)

    def client_argv(
        self, node: str, address: str, *extra: str, ca: Path | None = None, out: Path | None = None
    ) -> list[str]:
        out = out or self.root / "out" / node
        return [
            NODE_PYTHON,
            "-I",
            "-c",
            NODE_BOOTSTRAP,
            "--url",
            self.url,
            "--ca",
            str(ca or self.ca_file),
            "--node",
            node,
            "--address",
            address,
            "--key-out",
            str(out / "node.key"),
            "--cert-out",
            str(out / "node.pem"),
            *extra,
        ]


@pytest.fixture
def soft_tpms(tmp_path: Path) -> Iterator[Callable[[], SoftTpm]]:
    started: list[SoftTpm] = []

    def start() -> SoftTpm:
        tpm = start_swtpm(tmp_path / f"tpm{len(started)}", free_ports(2))
        started.append(tpm)
        return tpm

    yield start
    for tpm in started:
        tpm.stop()


@pytest.fixture
def lab(
    tmp_path: Path, soft_tpms: Callable[[], SoftTpm], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Lab]:
    config = write_lab_config(tmp_path)
    cluster = load_cluster(config)[0]
    pki = pki_at(cluster, tmp_path / "pki")
    pki.init_ca(cluster.cluster.name, dt.datetime.now(dt.UTC), 30)
    tpm_a, tpm_b = soft_tpms(), soft_tpms()
    ek_a = tpm_ek_hash(tpm_a)
    approve(registry.registry_path(cluster, config), cluster, ek_a, "node01", "test TPM A")
    bodies: list[bytes] = []
    for record in (StartRequest, FinishRequest, ApprovalRequest):
        original = record.from_json

        def recording(body: bytes, original: Callable[[bytes], object] = original) -> object:
            bodies.append(body)
            return original(body)

        monkeypatch.setattr(record, "from_json", staticmethod(recording))
    settings = service.ServiceSettings(
        ipaddress.IPv4Address("127.0.0.1"), free_ports(1), rate_per_second=1000, burst=1000
    )
    server = server_mod.open_service(cluster, config, pki, settings)
    server.start_background()
    try:
        yield Lab(tmp_path, config, cluster, pki, server, tpm_a, tpm_b, ek_a, bodies)
    finally:
        server.stop()


def pending_entries(lab: Lab) -> list[dict[str, object]]:
    entries = registry.PendingStore(lab.pki.paths.root / registry.PENDING_FILE).entries()
    return [{**dataclasses.asdict(p), "macs": list(p.macs)} for p in entries]


def raw_post(
    lab: Lab, path: str, body: bytes, method: str = "POST", declared: int | None = None
) -> tuple[int, dict[str, str]]:
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    conn = http.client.HTTPSConnection(
        "127.0.0.1", lab.server.server_address[1], context=ctx, timeout=10
    )
    try:
        if declared is None:
            conn.request(method, path, body, {"Content-Type": "application/json"})
        else:  # announce a body and send none: the server must answer without reading it
            conn.putrequest(method, path)
            conn.putheader("Content-Length", str(declared))
            conn.endheaders()
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()
