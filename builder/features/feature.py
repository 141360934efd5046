"""What a feature declares (builder/features/<name>.py) beside its folder overlays/<name>/."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks import Report
from ..errors import Problem
from ..loader import Document
from ..model import Cluster, Node
from ..views import NodeView

# a file of overlays/<name>/ ending so is a template, rendered per node (its name without it)
TEMPLATE_SUFFIX = ".j2"
Fields = Mapping[str, Any]
Counters = tuple[tuple[str, str], ...]


def no_fields(cluster: Cluster, node: Node, core: NodeView) -> Fields:
    return {}


def no_packages(cluster: Cluster) -> tuple[str, ...]:
    return ()


def no_counters(cluster: Cluster, node: Node) -> Counters:
    return ()


def no_links(cluster: Cluster) -> tuple[tuple[str, str], ...]:
    return ()


def no_files(cluster: Cluster, node: Node) -> Mapping[str, bytes]:
    return {}


def no_check(cluster: Cluster, doc: Document, report: Report) -> None:
    return None


def no_finish(section: Any, base: Path) -> tuple[Any, list[Problem]]:
    return section, []


@dataclass(frozen=True)
class Feature:
    name: str  # its folder: overlays/<name>/
    # what it adds to a node's render context (templates of any feature may read it)
    fields: Callable[[Cluster, Node, NodeView], Fields] = no_fields
    # templates (relative to overlays/<name>/) a node gets only when one of this feature's
    # fields is true; every other template of the folder goes to every node
    only_for: Mapping[str, str] = field(default_factory=dict)
    units: tuple[str, ...] = ()  # units the image enables besides the packages' own
    disable_units: tuple[str, ...] = ()  # units its packages enable that must wait
    packages: Callable[[Cluster], tuple[str, ...]] = no_packages  # Debian packages
    # symbolic links (path in the image, target) its packages leave out
    links: Callable[[Cluster], tuple[tuple[str, str], ...]] = no_links
    counters: Callable[[Cluster, Node], Counters] = no_counters  # named nft drop counters
    # a node's files that are data, not a template: {path in the node's root: bytes}
    files: Callable[[Cluster, Node], Mapping[str, bytes]] = no_files
    # a subfolder of overlays/<name>/ that only this feature's own node gets in its cpio
    # (the always-on head's services), never the base every node boots; "" for none
    own_root: str = ""
    # its model section: a frozen dataclass whose fields are top-level chaos.yaml keys, declared
    # with builder.settings (builder/<name>/model.py); None: the feature has no settings
    model: type | None = None
    # the top-level key its keys follow (the reference, `show` and the loader keep this order)
    model_after: str = ""
    # its cross-field checks (file:line:field problems through `report`), after parsing
    check: Callable[[Cluster, Document, Report], None] = no_check
    # its section completed from files beside chaos.yaml (`base`), with their own problems
    finish: Callable[[Any, Path], tuple[Any, list[Problem]]] = no_finish
