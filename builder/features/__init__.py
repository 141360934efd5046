"""The features a node is made of, and the one place core code asks them.

A feature lives in two places: `overlays/<name>/` holds what lands on the node (`*.j2`
templates, rendered per node, beside static files, which every node's base image gets) and
`builder/features/<name>.py` declares the rest as one `Feature`: the fields it adds to a
node's render context, which of its templates a node gets, the units the image enables for
it, its Debian packages and the nft counters it adds. render.py, the image build and the
firewall read FEATURES; none of them names a feature.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import Report
from ..errors import Problem
from ..loader import Document
from ..model import Cluster, Node
from ..views import Peer, node_view
from . import admin, common, enroll, firewall, head, ipsec, night, slurm, tyd
from .feature import TEMPLATE_SUFFIX, Feature

# In render order; the firewall's counters come out in this order too.
FEATURES: tuple[Feature, ...] = (
    common.FEATURE,
    ipsec.FEATURE,
    firewall.FEATURE,
    tyd.FEATURE,
    enroll.FEATURE,
    night.FEATURE,
    slurm.FEATURE,
    head.FEATURE,
    admin.FEATURE,
)


@dataclass(frozen=True)
class NodeContext:
    """One node's render context (the core view and every feature's fields) and the
    templates (`feature/path.j2` under overlays/) it does not get."""

    fields: Mapping[str, Any]
    skipped: frozenset[str]

    def gets(self, template: str) -> bool:
        return template not in self.skipped


def node_context(
    cluster: Cluster,
    node: Node,
    everyone: tuple[Peer, ...] | None = None,
    hub_names: frozenset[str] | None = None,
) -> NodeContext:
    core = node_view(cluster, node, everyone, hub_names)
    fields = {f.name: getattr(core, f.name) for f in dataclasses.fields(core)}
    for feature in FEATURES:
        fields.update(feature.fields(cluster, node, core))
    fields["counters"] = tuple(c for f in FEATURES for c in f.counters(cluster, node))
    skipped = frozenset(
        f"{feature.name}/{template}"
        for feature in FEATURES
        for template, flag in feature.only_for.items()
        if not fields[flag]
    )
    return NodeContext(fields, skipped)


def enabled_units() -> tuple[str, ...]:
    """Units the image starts besides those the packages enable themselves."""
    return tuple(unit for f in FEATURES for unit in f.units)


def disabled_units() -> tuple[str, ...]:
    """Units the packages enable that must wait for what only a booted node has."""
    return tuple(unit for f in FEATURES for unit in f.disable_units)


def packages(cluster: Cluster) -> tuple[str, ...]:
    """Every feature's Debian packages for this cluster (unsorted, may repeat)."""
    return tuple(name for f in FEATURES for name in f.packages(cluster))


def links(cluster: Cluster) -> tuple[tuple[str, str], ...]:
    """Symbolic links (path in the image, target) the features' packages leave out."""
    return tuple(link for f in FEATURES for link in f.links(cluster))


@dataclass(frozen=True)
class TopKey:
    """One top-level chaos.yaml key and the model that declares it (Cluster, or a feature's
    model section)."""

    name: str
    owner: type
    field: dataclasses.Field[Any]

    @property
    def type(self) -> Any:
        return typing.get_type_hints(self.owner)[self.name]

    def value(self, cluster: Cluster) -> Any:
        holder = cluster if self.owner is Cluster else cluster.section(self.owner)
        return getattr(holder, self.name)


def models() -> tuple[type, ...]:
    """Every feature's model section, in FEATURES order."""
    return tuple(f.model for f in FEATURES if f.model is not None)


def top_level() -> tuple[TopKey, ...]:
    """Every top-level chaos.yaml key, in the reference's order: the core model's (Cluster),
    each feature's model section after the key it names (model_after)."""
    keys = [TopKey(f.name, Cluster, f) for f in dataclasses.fields(Cluster) if "help" in f.metadata]
    pending = [f for f in FEATURES if f.model is not None]
    while pending:  # a section may follow another feature's (firewall: after security:)
        feature = next(f for f in pending if any(k.name == f.model_after for k in keys))
        pending.remove(feature)
        at = next(i for i, k in enumerate(keys) if k.name == feature.model_after) + 1
        while at < len(keys) and keys[at].owner is not Cluster:
            at += 1  # after the sections an earlier feature put there
        assert feature.model is not None
        own = [TopKey(f.name, feature.model, f) for f in dataclasses.fields(feature.model)]
        keys[at:at] = own
    return tuple(keys)


def check(cluster: Cluster, doc: Document, report: Report) -> None:
    """Every feature's cross-field checks."""
    for feature in FEATURES:
        feature.check(cluster, doc, report)


def finish(cluster: Cluster, base: Path) -> tuple[Cluster, list[Problem]]:
    """Every feature's section completed from its files beside chaos.yaml (`base`)."""
    problems: list[Problem] = []
    for feature in FEATURES:
        if feature.model is not None:
            part, found = feature.finish(cluster.section(feature.model), base)
            cluster, problems = cluster.with_section(part), problems + found
    return cluster, problems


__all__ = ["FEATURES", "TEMPLATE_SUFFIX", "Feature", "NodeContext", "node_context"]
