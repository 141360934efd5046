"""The 17:00 storm: N PXE clients at once against `chaos-build serve`, and the nginx ceiling.

    python3 bench/storm.py                        # N = 100, 200, 500
    python3 bench/storm.py --nodes 100 --initrd-mb 31

Setup (not timed): two network namespaces joined by a veth pair, the server side (lab0,
10.96.0.1/22) and the clients' side (cli0, 10.96.0.2/22): no traffic leaves them. A cluster
file with max(N) nodes and a synthetic PXE tree (random bytes, named as `chaos-build build`
names them). In the server namespace: `chaos-build serve` (isolated mode: dnsmasq + nginx,
HTTP :8080) and, as the ceiling, a plain nginx with sendfile on the same tree (:8081).

Timed, for each N (bench/pxe_clients.py, N threads released together in the client
namespace, each with one kept-alive connection, as iPXE):
  serve PXE   TFTP loader, then boot.ipxe, mac-<mac>.ipxe, kernel, initrd, node cpio
  serve SB    the Secure Boot path: everything over dnsmasq's TFTP (signed GRUB has no
              HTTP), at the block sizes the loaders negotiate: shim, GRUB, grub.cfg, the
              node's config, kernel, initrd, node cpio (the bytes per node are printed)
  serve HTTP  the same without TFTP
  ceiling     the same HTTP fetches from the plain nginx
  asyncio     the same from bench/asyncio_sendfile.py (loop.sendfile): the alternative to
              nginx that the issue asked to measure side by side
Prints completion time (start until the last client is done), throughput, failures, and
serve's HTTP throughput as a share of the ceiling; and serve's event record during its two
runs (issue 23): the boot answers it recorded while it answered the storm, per second, and
the events it dropped (its /metrics chaos_events_dropped, fetched over the admin listener).
Bodies are checked by size here (by SHA-256 in tests/test_serve.py); the clients are Python
threads on the same 2 cores as the servers, so both rows share that limit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pxe_clients import write_tree  # noqa: E402
from builder.admin import events  # noqa: E402
from builder.run import supervised  # noqa: E402
from builder.smoke.admin_checks import samples  # noqa: E402

SERVER, CLIENT, PREFIX = "10.96.0.1", "10.96.0.2", 22
SERVE_PORT, CEILING_PORT, ASYNCIO_PORT = 8080, 8081, 8082
MAX_NODES = 750  # addresses 10.96.1.1 .. 10.96.3.250
RUN_TIMEOUT = 600  # seconds per client run: the bench is bounded however the servers behave


def cluster_yaml(nodes: int) -> str:
    lines = [
        "cluster:",
        "  name: storm",
        "network:",
        f"  subnet: 10.96.0.0/{PREFIX}",
        "  gateway: null",
        "serve:",
        "  mode: isolated",
        "nodes:",
    ]
    for i in range(nodes):
        lines += [
            f"  - name: n{i:04d}",
            f'    mac: "52:54:00:aa:{i >> 8:02x}:{i & 255:02x}"',
            f"    address: 10.96.{1 + i // 250}.{1 + i % 250}",
        ]
    return "\n".join(lines) + "\n"


# what UEFI PXE under Secure Boot fetches, all over TFTP (node n0000's files for every
# client), with the block size each loader asks for (seen on the smoke lab's wire): OVMF
# 1468 for shim, shim 512 for GRUB, signed GRUB 1024 for the rest
SECURE_BOOT_TFTP = (
    ("shimx64.efi", 1468),
    ("grubx64.efi", 512),
    ("grub/grub.cfg", 1024),
    ("grub/mac-52:54:00:aa:00:00.cfg", 1024),
    ("vmlinuz", 1024),
    ("initrd.img", 1024),
    ("nodes/n0000.cpio", 1024),
)


def secure_boot_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"tftp": list(SECURE_BOOT_TFTP), "http": [[]], "files": manifest["files"]}


def ceiling_conf(pxe: Path, run: Path) -> str:
    """The plainest nginx that serves files fast: the ceiling serve is measured against."""
    return f"""daemon off;
user root root;
worker_processes auto;
pid {run / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 8192; }}
http {{
    sendfile on;
    tcp_nopush on;
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path {run}/client_body_temp;
    proxy_temp_path {run}/proxy_temp;
    fastcgi_temp_path {run}/fastcgi_temp;
    uwsgi_temp_path {run}/uwsgi_temp;
    scgi_temp_path {run}/scgi_temp;
    server {{ listen {SERVER}:{CEILING_PORT}; root {pxe}; }}
}}
"""


@contextlib.contextmanager
def namespaces() -> Iterator[tuple[str, str]]:
    srv, cli = f"chaos-storm-srv-{os.getpid()}", f"chaos-storm-cli-{os.getpid()}"
    try:
        for ns in (srv, cli):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                "ip",
                "-n",
                srv,
                "link",
                "add",
                "lab0",
                "type",
                "veth",
                "peer",
                "name",
                "cli0",
                "netns",
                cli,
            ],
            check=True,
        )
        for ns, dev, addr in ((srv, "lab0", SERVER), (cli, "cli0", CLIENT)):
            subprocess.run(
                ["ip", "-n", ns, "addr", "add", f"{addr}/{PREFIX}", "dev", dev], check=True
            )
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        yield srv, cli
    finally:
        for ns in (srv, cli):
            subprocess.run(["ip", "netns", "del", ns], check=False, stderr=subprocess.DEVNULL)


def wait_http(cli: str, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        r = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                cli,
                "curl",
                "-sf",
                "--max-time",
                "2",
                "-o",
                "/dev/null",
                f"http://{SERVER}:{port}/boot.ipxe",
            ],
            check=False,
        )
        if r.returncode == 0:
            return
        time.sleep(0.3)
    raise SystemExit(f"nothing answers on {SERVER}:{port}; see the logs in the work dir")


def clients(cli: str, port: int, manifest: Path, n: int, tftp: bool) -> dict[str, Any]:
    argv = [
        "ip",
        "netns",
        "exec",
        cli,
        sys.executable,
        str(ROOT / "bench" / "pxe_clients.py"),
        "--server",
        SERVER,
        "--port",
        str(port),
        "--manifest",
        str(manifest),
        "--clients",
        str(n),
    ]
    r = subprocess.run(
        argv if tftp else [*argv, "--no-tftp"],
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    if r.returncode != 0:
        raise SystemExit(f"clients failed: {r.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def row(label: str, n: int, result: dict[str, Any], tftp: bool = False) -> float:
    rate = result["bytes"] / result["seconds"] / 1e6
    print(
        f"{n:>5} {label:<11} {result['seconds']:>8.2f} s {rate:>9.0f} MB/s "
        f"{rate * 8 / 1000:>6.2f} Gbit/s   failed clients {result['failed_clients']:>3}"
        + (f"  (last TFTP loader at {result['tftp_seconds']:.2f} s)" if tftp else ""),
        flush=True,
    )
    for failure in result["failures"][:5]:
        print(f"        {failure}", flush=True)
    return rate


def recorded(srv: str, run_dir: Path, since: dt.datetime, until: dt.datetime) -> tuple[int, int]:
    """(events serve recorded in [since, until], events it dropped so far)."""
    time.sleep(2)  # the log followers poll every 0.5 s; the writer batches
    db = events.connect(run_dir / events.DB_NAME, readonly=True)
    try:
        n = len(events.read(db, since, until))
    finally:
        db.close()
    r = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            srv,
            sys.executable,
            "-m",
            "builder.smoke.admin_checks",
            "fetch",
            str(run_dir / "admin.token"),
            "http://127.0.0.1:9180/metrics",
        ],
        capture_output=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    dropped = samples(r.stdout.decode()).get("chaos_events_dropped", {}).get((), -1)
    return n, int(dropped)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[100, 200, 500])
    ap.add_argument("--kernel-mb", type=float, default=8)
    ap.add_argument(
        "--initrd-mb",
        type=float,
        default=8,
        help="synthetic initrd size (the real one is ~31 MB; 8 keeps a run on 2 cores short)",
    )
    ap.add_argument("--cpio-kb", type=int, default=256)
    ap.add_argument(
        "--secure-boot-max",
        type=int,
        default=100,
        help="run the all-TFTP Secure Boot row up to this N (it is slow)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, dnsmasq)")
    if not all(1 <= n <= MAX_NODES for n in args.nodes):
        raise SystemExit(f"--nodes: each 1..{MAX_NODES}")
    if not 0 < args.initrd_mb <= 64 or not 0 < args.kernel_mb <= 32:
        raise SystemExit("--initrd-mb 0..64, --kernel-mb 0..32: the bench stays short")
    nodes = max(args.nodes)
    # SIGTERM unwinds like Ctrl-C: servers stopped, namespaces deleted
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print(
        f"storm: kernel {args.kernel_mb:g} MB, synthetic initrd {args.initrd_mb:g} MB "
        f"(real: ~31 MB), node cpio {args.cpio_kb} KB, loader over TFTP 70 KB; veth between "
        "two namespaces; bodies checked by size",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="chaos-storm-") as tmp:
        work = Path(tmp)
        (work / "chaos.yaml").write_text(cluster_yaml(nodes))
        manifest = write_tree(
            work / "pxe",
            [(f"n{i:04d}", f"52-54-00-aa-{i >> 8:02x}-{i & 255:02x}") for i in range(nodes)],
            kernel=int(args.kernel_mb * 1e6),
            initrd=int(args.initrd_mb * 1e6),
            cpio=args.cpio_kb * 1000,
        )
        (work / "manifest.json").write_text(json.dumps(manifest))
        (work / "secure-boot.json").write_text(json.dumps(secure_boot_manifest(manifest)))
        sb_bytes = sum(manifest["files"][f]["size"] for f, _ in SECURE_BOOT_TFTP)
        (work / "ceiling").mkdir()
        (work / "ceiling" / "nginx.conf").write_text(ceiling_conf(work / "pxe", work / "ceiling"))
        with (
            namespaces() as (srv, cli),
            supervised(
                [
                    "ip",
                    "netns",
                    "exec",
                    srv,
                    sys.executable,
                    "-m",
                    "builder.cli",
                    "serve",
                    "-c",
                    work / "chaos.yaml",
                    "--pxe",
                    work / "pxe",
                    "--interface",
                    "lab0",
                    "--run-dir",
                    work / "serve",
                ],
                log_file=work / "serve.log",
            ),
            supervised(
                [
                    "ip",
                    "netns",
                    "exec",
                    srv,
                    "nginx",
                    "-p",
                    f"{work / 'ceiling'}/",
                    "-c",
                    work / "ceiling" / "nginx.conf",
                    "-e",
                    "stderr",
                ],
                log_file=work / "ceiling.log",
            ),
            supervised(
                [
                    "ip",
                    "netns",
                    "exec",
                    srv,
                    sys.executable,
                    ROOT / "bench" / "asyncio_sendfile.py",
                    "--root",
                    work / "pxe",
                    "--listen",
                    SERVER,
                    "--port",
                    str(ASYNCIO_PORT),
                ],
                log_file=work / "asyncio.log",
            ),
        ):
            deadline = time.monotonic() + 30
            wait_http(cli, SERVE_PORT, deadline)
            wait_http(cli, CEILING_PORT, deadline)
            wait_http(cli, ASYNCIO_PORT, deadline)
            print(f"{'N':>5} {'server':<11} {'complete':>10} {'throughput':>14}", flush=True)
            for n in args.nodes:
                began = dt.datetime.now(dt.UTC)
                row(
                    "serve PXE",
                    n,
                    clients(cli, SERVE_PORT, work / "manifest.json", n, True),
                    tftp=True,
                )
                if n <= args.secure_boot_max:
                    row(
                        f"serve SB ({sb_bytes / 1e6:.1f} MB/node over TFTP)",
                        n,
                        clients(cli, SERVE_PORT, work / "secure-boot.json", n, True),
                    )
                served = row(
                    "serve HTTP", n, clients(cli, SERVE_PORT, work / "manifest.json", n, False)
                )
                ended = dt.datetime.now(dt.UTC)
                seconds = (ended - began).total_seconds()
                n_events, dropped = recorded(
                    srv, work / "serve", began, ended + dt.timedelta(seconds=1)
                )
                print(
                    f"{n:>5} serve's record: {n_events} events while it answered both runs "
                    f"({seconds:.1f} s, {n_events / seconds:.0f} events/s), {dropped} "
                    "dropped",
                    flush=True,
                )
                ceiling = row(
                    "ceiling", n, clients(cli, CEILING_PORT, work / "manifest.json", n, False)
                )
                aio = row(
                    "asyncio", n, clients(cli, ASYNCIO_PORT, work / "manifest.json", n, False)
                )
                print(
                    f"{n:>5} serve HTTP / ceiling: {100 * served / ceiling:.0f}%, "
                    f"asyncio sendfile / ceiling: {100 * aio / ceiling:.0f}%",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
