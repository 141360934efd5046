"""Build step write_measured_reference: out/measured-reference.json from the boot files of
this build (kernel, base initrd, each node's overlay and GRUB config; the ISO's GRUB config
and node file when the build makes an ISO) and the host's signed shim and GRUB (shim-signed,
grub-efi-amd64-signed)."""

from __future__ import annotations

import logging

from builder.image.base import INITRD_NAME, KERNEL_NAME
from builder.image.context import BuildContext
from builder.image.iso import grub_cfg, iso_marker_text, iso_nodes_cpio
from builder.image.pxe import GRUB_NET_CFG, grub_net_entry, kernel_cmdline
from builder.model import ImageFormat

from .reference import (
    GRUB_NET_SIGNED,
    GRUB_SIGNED,
    REFERENCE_FILE,
    SHIM_SIGNED,
    BootFiles,
    IsoBoot,
    NodeBoot,
    compute_reference,
    write_reference,
)

log = logging.getLogger("chaos.measured")


def write_measured_reference(ctx: BuildContext) -> bool:
    files = BootFiles(kernel=ctx.base_dir / KERNEL_NAME, initrd=ctx.base_dir / INITRD_NAME)
    nodes = [
        NodeBoot(node.name, node.mac, ctx.node_cpios[node.name], grub_net_entry(ctx, node))
        for node in ctx.nodes
    ]
    reference = compute_reference(
        files,
        KERNEL_NAME,
        kernel_cmdline(ctx),
        [GRUB_NET_CFG],
        nodes,
        ctx.cluster.serve.address,
        iso_boot(ctx),
    )
    write_reference(reference, ctx.staging / REFERENCE_FILE)
    log.info("measured-boot reference for %d nodes: %s", len(nodes), REFERENCE_FILE)
    return True


def iso_boot(ctx: BuildContext) -> IsoBoot | None:
    """The ISO's UEFI path, when this build makes an ISO."""
    if ImageFormat.ISO not in ctx.cluster.image.formats:
        return None
    bundle = iso_nodes_cpio(ctx) if ctx.node is None else None
    return IsoBoot(grub_cfg(ctx), bundle, iso_marker_text(ctx))


HOST_FILES = {
    str(SHIM_SIGNED): "signed shim, measured into PCR 4 (shim-signed)",
    str(GRUB_SIGNED): "signed GRUB, measured into PCR 4 (grub-efi-amd64-signed)",
    str(GRUB_NET_SIGNED): "signed net GRUB, measured into PCR 4 (grub-efi-amd64-signed)",
}
