"""Helpers of the measured-boot tests: a tiny PE image, a reference for the default
cluster's nodes, evidence from a software TPM that followed a synthetic boot."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from types import SimpleNamespace

from chaostest import ROOT

from builder.config import load_cluster
from builder.image.iso import grub_cfg
from builder.image.pxe import GRUB_NET_CFG, grub_net_entry, kernel_cmdline
from builder.measured.reference import (
    GRUB_NET_SIGNED,
    GRUB_SIGNED,
    SHIM_SIGNED,
    BootFiles,
    IsoBoot,
    NodeBoot,
    Reference,
    compute_reference,
)

SERVER = ipaddress.IPv4Address("10.99.0.1")  # chaos.yaml serve.address
BASE_KEY = "0123abcd"  # the test build's base key (the ISO's marker file names it)
BUNDLE = b"the node bundle of the test ISO"
MARKER = b"chaos-lab\n"  # the ISO's marker file (GRUB's search opens it)
NODE = "node01"


def tiny_pe(payload: bytes, cert_table: bytes = b"", pe32_plus: bool = True) -> bytes:
    """A minimal PE image with one section holding `payload` (padded to 512), and an
    optional certificate table at the end."""
    section = payload.ljust(-(-len(payload) // 512) * 512 or 512, b"\0")
    optional_size = 240 if pe32_plus else 224
    header = bytearray(0x200)
    header[:2] = b"MZ"
    struct.pack_into("<I", header, 0x3C, 0x40)
    header[0x40:0x44] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", header, 0x44, 0x8664, 1, 0, 0, 0, optional_size, 0x22)
    opt = 0x58
    struct.pack_into("<H", header, opt, 0x20B if pe32_plus else 0x10B)
    struct.pack_into("<I", header, opt + 60, 0x200)  # SizeOfHeaders
    struct.pack_into("<I", header, opt + 64, 0x1234)  # CheckSum (not hashed)
    directories = opt + (112 if pe32_plus else 96)
    struct.pack_into("<I", header, directories - 4, 16)  # NumberOfRvaAndSizes
    if cert_table:
        struct.pack_into("<II", header, directories + 32, 0x200 + len(section), len(cert_table))
    table = opt + optional_size
    header[table : table + 8] = b".text\0\0\0"
    struct.pack_into("<IIII", header, table + 8, len(section), 0x1000, len(section), 0x200)
    return bytes(header) + section + cert_table


def cluster():
    return load_cluster(ROOT / "chaos.yaml")[0]


def boot_files(root: Path) -> BootFiles:
    """The host's signed shim and GRUB (shim-signed, grub-efi-amd64-signed), a tiny PE
    standing in for the kernel, and a stand-in base initrd."""
    root.mkdir(parents=True, exist_ok=True)
    kernel, initrd = root / "vmlinuz", root / "initrd.img"
    kernel.write_bytes(tiny_pe(b"chaos test kernel"))
    initrd.write_bytes(b"070701 base initrd of the test")
    return BootFiles(
        kernel=kernel, initrd=initrd, shim=SHIM_SIGNED, grub=GRUB_SIGNED, grub_net=GRUB_NET_SIGNED
    )


def make_reference(root: Path) -> Reference:
    c = cluster()
    ctx = SimpleNamespace(cluster=c, base_key=BASE_KEY)
    nodes = [
        NodeBoot(n.name, n.mac, f"overlay of {n.name}".encode(), grub_net_entry(ctx, n))
        for n in c.nodes
    ]  # type: ignore[arg-type]
    return compute_reference(
        boot_files(root),
        "vmlinuz",
        kernel_cmdline(ctx),  # type: ignore[arg-type]
        [GRUB_NET_CFG],
        nodes,
        SERVER,
        IsoBoot(grub_cfg(ctx), BUNDLE, MARKER),  # type: ignore[arg-type]
    )
