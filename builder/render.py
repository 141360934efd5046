"""Render every node's overlay tree from the features' templates (pure) and write it (atomic).

Each feature's templates are the `*.j2` files of its folder `overlays/<feature>/`; a template
`overlays/slurm/etc/slurm/slurm.conf.j2` becomes the node's `etc/slurm/slurm.conf`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jinja2

from chaosnode.paths import (
    CA_CERT,
    CA_CERT_PATH,
    CRL_PATH,
    NODE_CERT,
    in_root,
)

from .errors import RenderError
from .features import FEATURES, NodeContext, node_context
from .model import Cluster, Node
from .pki import Pki
from .resources import data_dir
from .tydconf import HEADER
from .views import Peer, all_peers, hubs

OVERLAYS = data_dir("overlays")


@dataclass(frozen=True)
class OutFile:
    data: bytes
    mode: int = 0o644


Tree = dict[str, OutFile]


def environment(overlays: Path = OVERLAYS) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(overlays)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def template_names(overlays: Path = OVERLAYS) -> list[str]:
    """Every feature's templates, as `feature/path.j2`; a folder no feature declares is an
    error (its templates would be left out without a word)."""
    declared = {f.name for f in FEATURES}
    unknown = sorted(d.name for d in overlays.iterdir() if d.is_dir() and d.name not in declared)
    if unknown:
        raise RenderError(
            f"{overlays}/{unknown[0]}: no feature declares this folder; add "
            f"builder/features/{unknown[0]}.py and list it in FEATURES"
        )
    return sorted(
        p.relative_to(overlays).as_posix()
        for f in FEATURES
        for p in (overlays / f.name).rglob("*.j2")
        if p.is_file()
    )


def output_path(name: str) -> str:
    """`slurm/etc/slurm/slurm.conf.j2` -> `etc/slurm/slurm.conf`: where it lands on the node."""
    return name.split("/", 1)[1].removesuffix(".j2")


def render_templates(context: NodeContext, env: jinja2.Environment, names: Iterable[str]) -> Tree:
    """Pure: one node's context -> {relative path: file} for every template it gets."""
    values = {**context.fields, "header": HEADER, "node_cert": NODE_CERT, "ca_cert": CA_CERT}
    tree: Tree = {}
    for name in names:
        if not context.gets(name):
            continue
        try:
            text = env.get_template(name).render(values)
        except jinja2.TemplateError as exc:
            raise RenderError(f"overlays/{name}: {exc}") from None
        tree[output_path(name)] = OutFile(text.encode())
    return tree


def pki_files(pki: Pki) -> Tree:
    """Public things only: the cluster CA and the CRL. A node's key is made on the node at
    boot and its certificate comes from enrollment; no private key is ever rendered."""
    if not pki.has_ca():
        raise RenderError(
            f"no cluster CA in {pki.paths.root}: run `chaos-build pki init` "
            "first (`chaos-build build` makes one)"
        )
    return {
        in_root(CA_CERT_PATH): OutFile(pki.paths.ca_cert.read_bytes()),
        in_root(CRL_PATH): OutFile(pki.crl_pem()),
    }


def node_tree(
    cluster: Cluster,
    node: Node,
    pki: Pki | None,
    env: jinja2.Environment,
    names: list[str],
    everyone: tuple[Peer, ...] | None = None,
    hub_names: frozenset[str] | None = None,
) -> Tree:
    tree = render_templates(node_context(cluster, node, everyone, hub_names), env, names)
    for feature in FEATURES:
        tree.update({rel: OutFile(data) for rel, data in feature.files(cluster, node).items()})
    if pki is not None:
        tree.update(pki_files(pki))
    return tree


def write_tree(root: Path, tree: Tree) -> None:
    """Write files under root; refuse any path that would escape it."""
    for rel, out in sorted(tree.items()):
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise RenderError(f"refusing to write {rel!r}: it escapes the node's root")
        path = root.joinpath(*pure.parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, out.mode)
        with os.fdopen(fd, "wb") as f:
            f.write(out.data)
        os.chmod(path, out.mode)


def render_cluster(
    cluster: Cluster,
    pki: Pki | None,
    out_dir: Path,
    only: str | None = None,
    overlays: Path = OVERLAYS,
) -> list[str]:
    """Render every node (or one) into out_dir/NAME via a staging dir; returns node names."""
    env, names = environment(overlays), template_names(overlays)
    nodes = [cluster.node(only)] if only else list(cluster.nodes)
    everyone, hub_names = all_peers(cluster), hubs(cluster)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for node in nodes:
            tree = node_tree(cluster, node, pki, env, names, everyone, hub_names)
            write_tree(staging / node.name, tree)
        if only:
            out_dir.mkdir(parents=True, exist_ok=True)
            _swap(staging / only, out_dir / only)
        else:
            _swap(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [n.name for n in nodes]


def _swap(new: Path, dest: Path) -> None:
    """Move new into place at dest; the old tree is removed only after the rename."""
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
