"""Step pack_node_overlays: each node's rendered overlay tree as its own small cpio.

A PXE boot or a per-node ISO loads the node's cpio after the base initrd, so the node's
files land directly on /. The shared ISO loads one bundle holding every node's tree under
/usr/lib/chaos/nodes/<name>/; chaos-identity.service picks the one matching a NIC's MAC.
The bundle is zstd-compressed whatever image.compression says: its trees differ in little
more than names and addresses, so it costs ~200 bytes a node instead of ~16 KB (measured with
bench/render.py at 100-2000 nodes); the kernel unpacks a compressed cpio behind the base
initrd like a plain one (CONFIG_RD_ZSTD), with zstd's default 8 MiB window at -19.

The always-on head's cpio also carries overlays/head (its sshd, nfs-server and the drop-ins
that tie them and slurmctld to the state disk) and the storage modules the base leaves out
(builder/image/prune.py HEAD_STORAGE): no other node's cpio, and not the shared ISO's bundle,
so a lab PC never sees its disks. The head boots over PXE or from its own ISO (`--node`).
"""

from __future__ import annotations

from pathlib import Path

from builder.errors import BuildError
from builder.image import cpio
from builder.image.context import BuildContext
from builder.run import run
from chaosnode import paths
from chaosnode.contract.node import NodeSettings

BUNDLE_PREFIX = paths.in_root(paths.NODE_BUNDLE)


def pack_node_overlays(ctx: BuildContext) -> bool:
    trees = {}
    for node in ctx.nodes:
        tree = ctx.nodes_dir / node.name
        node_json = tree / "etc" / "chaos" / "node.json"
        if not node_json.is_file():
            raise BuildError(
                f"{node_json}: missing; render the node overlays first (chaos-build render)"
            )
        try:
            identity = NodeSettings.loads(node_json.read_text())
        except ValueError as exc:
            raise BuildError(f"{node_json}: {exc}; render the node overlays again") from None
        if identity.mac.lower() != node.mac.lower():
            raise BuildError(
                f"{node_json}: mac {identity.mac} is not {node.mac} "
                f"from chaos.yaml; render the node overlays again"
            )
        trees[node.name] = tree
        if node == ctx.cluster.always_on_head:
            # zstd like the bundle: the storage modules are most of it (5.5 MB plain)
            ctx.node_cpios[node.name] = compress_bundle(
                cpio.archive(head_entries(ctx, tree), ctx.epoch)
            )
        else:
            ctx.node_cpios[node.name] = cpio.pack_tree(tree, ctx.epoch)
    entries: dict[str, cpio.Entry] = {}
    for name, tree in trees.items():
        entries.update(cpio.tree_entries(tree, ctx.epoch, f"{BUNDLE_PREFIX}/{name}"))
    ctx.bundle_cpio = compress_bundle(cpio.archive(entries, ctx.epoch))
    return True


def head_entries(ctx: BuildContext, tree: Path) -> dict[str, cpio.Entry]:
    """The always-on head's root: its storage modules, overlays/head, then its own tree."""
    for part in (ctx.head_modules, ctx.head_overlay):
        if not part.is_dir():
            raise BuildError(
                f"{part}: missing; the always-on head needs it (rebuild the base: "
                "remove the cache's base folder)"
            )
    entries = cpio.tree_entries(ctx.head_modules, ctx.epoch)
    entries.update(cpio.tree_entries(ctx.head_overlay, ctx.epoch))
    entries.update(cpio.tree_entries(tree, ctx.epoch))
    return entries


BUNDLE_COMPRESSOR = ("zstd", "-19", "-T0", "-q", "--no-progress", "-c")


def compress_bundle(packed: bytes) -> bytes:
    return run(BUNDLE_COMPRESSOR, input=packed, quiet=True).stdout
