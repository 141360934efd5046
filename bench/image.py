#!/usr/bin/env python3
"""Image benchmark: build times, artifact sizes and boot-to-READY seconds under TCG.

    python3 bench/image.py [--compressions zstd,lz4,xz,none] [--cold] [--lab] [--paths ...]

Builds the repo's chaos.yaml (fresh PKI, real renderer) with the shared cache
(CHAOS_IMAGE_CACHE, default /var/tmp/chaos-image-cache): the first build of a compression
rebuilds the base from the cached rootfs, a second one is the warm build (base reused).
--cold also builds once with an empty cache (downloads every package from the host's mirror).
The first compression is booted once per path (direct kernel + appended overlay, BIOS ISO,
UEFI ISO, iPXE PXE, UEFI GRUB PXE; `sb-iso` and `sb-pxe`: the ISO, and PXE through signed
shim and GRUB, under OVMF with Secure Boot enforced),
the others by direct kernel boot only, each to the CHAOS-READY/FAILED line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "image"))

from imagetest import CACHE_DIR, render_default_cluster, snapshot_repo  # noqa: E402

from builder.errors import BuildError  # noqa: E402
from builder.image.build import build_image  # noqa: E402
from builder.image.qemu import TCG, Machine, boot  # noqa: E402
from builder.model import Cluster, Compression, Hardware  # noqa: E402

MB = 1024 * 1024


def with_image(cluster: Cluster, **changes: object) -> Cluster:
    return dataclasses.replace(cluster, image=dataclasses.replace(cluster.image, **changes))


def timed_build(
    cluster: Cluster, nodes_dir: Path, out: Path, cache: Path, repo: Path
) -> tuple[float, dict[str, object]]:
    start = time.monotonic()
    summary = build_image(cluster, nodes_dir, out, cache, repo_dir=repo)
    return time.monotonic() - start, summary


def machine(path: str, out: Path, work: Path, mac: str) -> Machine:
    pxe = out / "pxe"
    if path == "direct":
        joined = work / "joined.img"
        joined.write_bytes(
            (pxe / "initrd.img").read_bytes() + (pxe / "nodes" / "node01.cpio").read_bytes()
        )
        return Machine(
            accel=TCG,
            mac=mac,
            kernel=pxe / "vmlinuz",
            initrd=joined,
            append="console=ttyS0,115200 quiet",
        )
    if path == "pxe":
        return Machine(accel=TCG, mac=mac, tftp=pxe, bootfile="boot.ipxe")
    if path == "uefi-pxe":
        return Machine(
            accel=TCG, mac=mac, tftp=pxe, bootfile="grubx64.efi", uefi=True, workdir=work
        )
    if path == "sb-pxe":  # the lab PC's path: Microsoft-signed shim, then signed net GRUB
        return Machine(
            accel=TCG,
            mac=mac,
            tftp=pxe,
            bootfile="shimx64.efi",
            uefi=True,
            secure_boot=True,
            workdir=work,
        )
    return Machine(
        accel=TCG,
        mac=mac,
        cdrom=out / "chaos.iso",
        uefi=path in ("uefi-iso", "sb-iso"),
        secure_boot=path == "sb-iso",
        workdir=work,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compressions", default="zstd,lz4,xz,none")
    ap.add_argument("--paths", default="direct,bios-iso,uefi-iso,pxe,uefi-pxe")
    ap.add_argument("--cold", action="store_true", help="also build once with an empty cache")
    ap.add_argument("--lab", action="store_true", help="also build the lab hardware profile")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chaos-bench-"))
    results: dict[str, object] = {}
    try:
        # a snapshot of overlays/ and the node packages: edits during the run
        # must not rebuild the base
        repo = snapshot_repo(work / "repo")
        cluster, nodes_dir = render_default_cluster(work)
        mac = cluster.node("node01").mac
        if args.cold:
            seconds, summary = timed_build(
                cluster, nodes_dir, work / "cold-out", work / "cold", repo
            )
            results["cold_build_s"] = round(seconds, 1)
            results["cold_steps"] = {
                s["name"]: s["seconds"]  # type: ignore[index]
                for s in summary["steps"]
            }  # type: ignore[attr-defined]
            shutil.rmtree(work / "cold")
        for index, name in enumerate(args.compressions.split(",")):
            variant = with_image(cluster, compression=Compression(name))
            out = work / f"out-{name}"
            try:
                first, summary = timed_build(variant, nodes_dir, out, CACHE_DIR, repo)
            except BuildError as err:
                results[name] = {"refused": str(err)}
                print(name, json.dumps(results[name]), flush=True)
                continue
            warm, _ = timed_build(variant, nodes_dir, work / f"warm-{name}", CACHE_DIR, repo)
            artifacts: dict[str, int] = summary["artifacts"]  # type: ignore[assignment]
            row: dict[str, object] = {
                "build_s": round(first, 1),
                "warm_build_s": round(warm, 1),
                "initrd_MB": round(artifacts["pxe/initrd.img"] / MB, 1),
                "iso_MB": round(artifacts["chaos.iso"] / MB, 1),
                "root_MB": round(summary["root_bytes"] / MB, 1),  # type: ignore[operator]
                "pack_initrd_s": next(
                    s["seconds"]
                    for s in summary["steps"]  # type: ignore
                    if s["name"] == "pack_initrd"
                ),
            }
            for path in args.paths.split(",") if index == 0 else ["direct"]:
                result = boot(machine(path, out, work, mac), timeout=600)
                row[f"boot_{path}_s"] = round(result.seconds, 1) if result.seconds else None
                row[f"boot_{path}_line"] = result.line
            results[name] = row
            print(name, json.dumps(row), flush=True)
        if args.lab:
            lab = with_image(cluster, hardware=Hardware.LAB)
            seconds, summary = timed_build(lab, nodes_dir, work / "out-lab", CACHE_DIR, repo)
            artifacts = summary["artifacts"]  # type: ignore[assignment]
            results["lab"] = {
                "build_s": round(seconds, 1),
                "iso_MB": round(artifacts["chaos.iso"] / MB, 1),
                "initrd_MB": round(artifacts["pxe/initrd.img"] / MB, 1),
            }
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
