"""Enrollment storm: N nodes enroll at once against `chaos-build enroll serve` on loopback.

    python3 bench/enroll.py                       # N = 50, 100, 500 with 4 swtpm
    python3 bench/enroll.py --nodes 100 --tpms 2

Setup (not timed): a cluster of N nodes, K swtpm instances; node i gets its own EK from
swtpm i % K (the standard EK template with a distinct `unique` field, so one TPM yields many
registered EKs) and an AK under it; all N EK hashes are registered; keys and CSRs are made.
Timed: all N clients start at once, each from its own loopback address (127.0.x.y, so the
per-source rate limit applies as in a lab): POST start, activate on its swtpm, POST finish.
Prints wall time until the last certificate, enrollments per second of wall time and per
CPU-second of the server process (the service runs as its own process), and latencies.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from tpm2_pytss.constants import ESYS_TR  # noqa: E402
from tpm2_pytss.types import (  # noqa: E402
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_SENSITIVE_CREATE,
)

from builder.enroll.swtpm import SoftTpm, free_ports, start_swtpm  # noqa: E402
from builder.pki import Pki  # noqa: E402
from chaosnode.enroll import make_csr, new_key  # noqa: E402
from chaosnode.enrollment import (  # noqa: E402
    FINISH_PATH,
    START_PATH,
    FinishRequest,
    FinishResponse,
    StartRequest,
    StartResponse,
    proof,
)
from chaosnode.tpm import Tpm, ak_template  # noqa: E402
from chaosnode.tpmpub import ek_hash  # noqa: E402


def node_address(i: int) -> str:
    return str(ipaddress.IPv4Address("10.96.0.10") + i)


def source_address(i: int) -> str:
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def unique(i: int) -> bytes:
    return f"chaos-bench-{i}".encode()


@dataclass
class SimNode:
    name: str
    tpm: int
    ek_public: bytes
    ak_private: Any
    ak_public: Any
    csr_pem: str
    csr_der: bytes


class TpmPool:
    """One open ESAPI per swtpm (a swtpm serves one connection at a time), each behind a lock."""

    def __init__(self, tpms: list[SoftTpm]) -> None:
        self.tpms = [Tpm(t.tcti).__enter__() for t in tpms]
        self.locks = [threading.Lock() for _ in tpms]

    def make_node(self, i: int, k: int) -> SimNode:
        tpm = self.tpms[k]
        with self.locks[k]:
            ek, ek_pub = tpm._create_ek(unique(i))
            try:
                esapi = tpm.esapi
                private, public, _, _, _ = tpm._with_policy(
                    lambda s: esapi.create(ek, TPM2B_SENSITIVE_CREATE(), ak_template(), session1=s)
                )
            finally:
                tpm._flush(ek)
        csr = make_csr(new_key(), f"n{i:04d}", ipaddress.IPv4Address(node_address(i)))
        return SimNode(
            f"n{i:04d}",
            k,
            ek_pub.marshal(),
            private,
            public,
            csr.public_bytes(serialization.Encoding.PEM).decode(),
            csr.public_bytes(serialization.Encoding.DER),
        )

    def activate(self, i: int, node: SimNode, blob: bytes, secret: bytes) -> bytes:
        tpm = self.tpms[node.tpm]
        esapi = tpm.esapi
        with self.locks[node.tpm]:
            ek, _ = tpm._create_ek(unique(i))
            ak = None
            try:
                ak = tpm._with_policy(
                    lambda s: esapi.load(ek, node.ak_private, node.ak_public, session1=s)
                )
                cred = tpm._with_policy(
                    lambda s: esapi.activate_credential(
                        ak,
                        ek,
                        TPM2B_ID_OBJECT.unmarshal(blob)[0],
                        TPM2B_ENCRYPTED_SECRET.unmarshal(secret)[0],
                        session1=ESYS_TR.PASSWORD,
                        session2=s,
                    )
                )
                return bytes(cred)
            finally:
                if ak is not None:
                    tpm._flush(ak)
                tpm._flush(ek)

    def close(self) -> None:
        for tpm in self.tpms:
            tpm.__exit__()


def write_cluster(path: Path, n: int) -> None:
    lines = ["cluster: {name: bench}", "network: {subnet: 10.96.0.0/16}", "nodes:"]
    for i in range(n):
        mac = f"52:54:00:96:{i // 256:02x}:{i % 256:02x}"
        lines.append(f'  - {{name: n{i:04d}, mac: "{mac}", address: {node_address(i)}}}')
    path.write_text("\n".join(lines) + "\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(conn: http.client.HTTPSConnection, path: str, body: bytes) -> bytes:
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
    return data


def storm(n: int, k: int, work: Path) -> dict[str, float]:
    work.mkdir(parents=True)
    config = work / "chaos.yaml"
    write_cluster(config, n)
    pki = Pki(work / "pki")
    from datetime import UTC, datetime  # noqa: PLC0415

    pki.init_ca("bench", datetime.now(UTC), 30)
    tpms = [start_swtpm(work / f"tpm{j}", free_ports(2)) for j in range(k)]
    pool = TpmPool(tpms)
    server = None
    try:
        t = time.perf_counter()
        nodes = [pool.make_node(i, i % k) for i in range(n)]
        registry = ["# bench registry"] + [f"{s.name}:\n  - {ek_hash(s.ek_public)}" for s in nodes]
        (work / "tpm-registry.yaml").write_text("\n".join(registry) + "\n")
        setup = time.perf_counter() - t
        port = free_ports(1)
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "builder.cli",
                "enroll",
                "serve",
                "-c",
                str(config),
                "--address",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert server.stderr is not None
        first = server.stderr.readline()
        if "enrollment service on" not in first:
            raise RuntimeError(f"service did not start: {first}")
        threading.Thread(target=server.stderr.read, daemon=True).start()  # drain the log
        ctx = ssl.create_default_context(cafile=str(pki.paths.ca_cert))
        go = threading.Barrier(n + 1)
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            node = nodes[i]
            go.wait()
            t0 = time.perf_counter()
            conn = http.client.HTTPSConnection(
                "127.0.0.1", port, context=ctx, timeout=120, source_address=(source_address(i), 0)
            )
            try:
                req = StartRequest(
                    node.name, (), node.ek_public, node.ak_public.marshal(), node.csr_pem
                )
                ch = StartResponse.from_json(post(conn, START_PATH, req.to_json()))
                secret = pool.activate(i, node, ch.credential_blob, ch.encrypted_secret)
                fin = FinishRequest(ch.session, proof(secret, node.csr_der))
                FinishResponse.from_json(post(conn, FINISH_PATH, fin.to_json()))
                with lock:
                    latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # a bench counts failures, it does not stop at one
                with lock:
                    failures.append(f"{node.name}: {type(exc).__name__}: {exc}")
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        cpu0 = cpu_seconds(server.pid)
        go.wait()
        t0 = time.perf_counter()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(server.pid) - cpu0
        for f in failures[:5]:
            print(f"  failed {f}", file=sys.stderr)
        lat = sorted(latencies) or [0.0]
        return {
            "n": n,
            "ok": len(latencies),
            "failed": len(failures),
            "setup_s": setup,
            "wall_s": wall,
            "server_cpu_s": cpu,
            "per_s_wall": len(latencies) / wall,
            "per_cpu_s": len(latencies) / cpu if cpu else 0.0,
            "p50_s": statistics.median(lat),
            "p95_s": lat[int(0.95 * (len(lat) - 1))],
            "max_s": lat[-1],
        }
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        pool.close()
        for tpm in tpms:
            tpm.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--nodes", type=int, action="append", help="N (repeatable); default 50, 100, 500"
    )
    p.add_argument("--tpms", type=int, default=4, help="swtpm instances (default 4)")
    args = p.parse_args()
    print(
        f"{'N':>5} {'ok':>5} {'fail':>5} {'wall s':>7} {'srv cpu s':>9} {'enr/s':>7} "
        f"{'enr/cpu-s':>9} {'p50 s':>6} {'p95 s':>6} {'max s':>6}  (setup s)"
    )
    with tempfile.TemporaryDirectory(prefix="chaos-bench-enroll-") as tmp:
        for n in args.nodes or [50, 100, 500]:
            r = storm(n, args.tpms, Path(tmp) / f"n{n}")
            print(
                f"{n:5d} {r['ok']:5.0f} {r['failed']:5.0f} {r['wall_s']:7.2f} "
                f"{r['server_cpu_s']:9.2f} {r['per_s_wall']:7.1f} {r['per_cpu_s']:9.1f} "
                f"{r['p50_s']:6.2f} {r['p95_s']:6.2f} {r['max_s']:6.2f}  "
                f"({r['setup_s']:.1f})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
