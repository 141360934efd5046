"""Measured-boot verification cost: what the enrollment service spends per node on the
quote and event-log check, and on 500 enrollments.

    python3 bench/measured.py                 # 500 nodes, 200 repeats
    python3 bench/measured.py --nodes 1000 --repeats 500

Setup (not timed): a reference for N nodes from the host's signed shim and GRUB (shim's signed
MokManager stands in for the kernel: the cost does not depend on which PE it is); a synthetic
genuine boot per node with the 4 banks OVMF logs (sha1, sha256, sha384, sha512).
Timed: (1) computing the reference (Authenticode of the real binaries); (2) on swtpm: the
node's quote, and the verification of that real quote, median over --repeats;
(3) N distinct nodes, each with its own AK (software-signed quotes), verified one after
another: the wall time for all N.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from tpm2_pytss.types import TPM2B_PUBLIC  # noqa: E402

from builder.enroll.swtpm import free_ports, start_swtpm  # noqa: E402
from builder.measured.eventlog import SHA1, SHA256  # noqa: E402
from builder.measured.reference import (  # noqa: E402
    BootFiles,
    NodeBoot,
    Reference,
    compute_reference,
)
from builder.measured.synthetic import Boot, boot_events, extend_tpm, log_bytes, soft_quote  # noqa: E402
from builder.measured.verify import Evidence, verify_boot  # noqa: E402
from chaosnode.tpm import AK_ATTRIBUTES, Tpm  # noqa: E402

SERVER = ipaddress.IPv4Address("10.99.0.1")
# a signed PE that is not shim or GRUB (shim-helpers-amd64-signed, a shim-signed dependency)
KERNEL_STAND_IN = Path("/usr/lib/shim/mmx64.efi.signed")
BANKS = (SHA1, SHA256, 0x000C, 0x000D)
ARGS = "console=tty0 console=ttyS0,115200 quiet"
GRUB_CFG = "set timeout=0\nconfigfile (tftp)/grub/mac-${net_default_mac}.cfg\n"


def node_boot(i: int) -> NodeBoot:
    mac = f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
    return NodeBoot(
        f"node{i:04d}",
        mac,
        f"overlay {i}".encode() * 1000,
        f"linux (tftp)/vmlinuz {ARGS}\ninitrd (tftp)/initrd.img "
        f"(tftp)/nodes/node{i:04d}.cpio\nboot\n",
    )


def make_reference(root: Path, nodes: int) -> tuple[Reference, float]:
    initrd = root / "initrd.img"
    initrd.write_bytes(b"base initrd" * 1000)
    start = time.perf_counter()
    reference = compute_reference(
        BootFiles(kernel=KERNEL_STAND_IN, initrd=initrd),
        "vmlinuz",
        ARGS,
        [GRUB_CFG],
        [node_boot(i) for i in range(nodes)],
        SERVER,
    )
    return reference, time.perf_counter() - start


def ak_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bytes(TPM2B_PUBLIC.from_pem(pem, objectAttributes=AK_ATTRIBUTES).marshal())


def on_swtpm(reference: Reference, repeats: int) -> tuple[list[float], list[float], int]:
    node = reference.nodes[0]
    events = boot_events(reference, node, SERVER, Boot(banks=BANKS))
    log = log_bytes(events, BANKS)
    quotes, verifies = [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_swtpm(Path(tmp) / "tpm", free_ports(2)) as soft,
        Tpm(soft.tcti) as tpm,
    ):
        extend_tpm(tpm.esapi, events)
        with tpm.keys() as keys:
            for i in range(repeats):
                nonce = i.to_bytes(32, "big")
                start = time.perf_counter()
                quote = keys.quote(nonce)
                quotes.append(time.perf_counter() - start)
                evidence = Evidence(quote.attest, quote.signature, log)
                start = time.perf_counter()
                verify_boot(evidence, keys.attestation.ak_public, nonce, reference, node.name)
                verifies.append(time.perf_counter() - start)
    return quotes, verifies, len(log)


def many_nodes(reference: Reference) -> tuple[float, list[float]]:
    work = []
    for node in reference.nodes:
        key = ec.generate_private_key(ec.SECP256R1())
        events = boot_events(reference, node, SERVER, Boot(banks=BANKS))
        nonce = node.name.encode().ljust(32, b"\0")
        attest, signature = soft_quote(key, nonce, events)
        work.append(
            (Evidence(attest, signature, log_bytes(events, BANKS)), ak_of(key), nonce, node.name)
        )
    each = []
    start = time.perf_counter()
    for evidence, ak, nonce, name in work:
        t = time.perf_counter()
        verify_boot(evidence, ak, nonce, reference, name)
        each.append(time.perf_counter() - t)
    return time.perf_counter() - start, each


def ms(values: list[float]) -> str:
    values = sorted(values)
    return (
        f"median {statistics.median(values) * 1e3:.2f} ms, p95 "
        f"{values[int(len(values) * 0.95)] * 1e3:.2f} ms, max {values[-1] * 1e3:.2f} ms"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reference, seconds = make_reference(Path(tmp), args.nodes)
    print(
        f"reference for {args.nodes} nodes (Authenticode of shim, 2 GRUBs, kernel): {seconds:.2f} s"
    )
    quotes, verifies, size = on_swtpm(reference, args.repeats)
    print(f"swtpm quote of sha256 PCRs 0-9,14 ({args.repeats}x): {ms(quotes)}")
    print(
        f"verify one enrollment (quote + {size}-byte event log, 4 banks; {args.repeats}x): "
        f"{ms(verifies)}"
    )
    wall, each = many_nodes(reference)
    print(
        f"verify {args.nodes} enrollments (distinct nodes and AKs), one after another: "
        f"{wall:.2f} s wall ({ms(each)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
