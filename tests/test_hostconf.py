"""The serve host's own configs, rendered from templates/ (builder/hostconf.py): golden files
made from the real code path. Update after an intended change: make golden."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from chaostest import ROOT

from builder.config import load_cluster
from builder.errors import RenderError
from builder.hostconf import render_host
from builder.image import pxe
from builder.image.context import BuildContext
from builder.nginx import NginxSite, nginx_conf

GOLDEN = ROOT / "tests" / "golden" / "serve"
UPDATE = os.environ.get("CHAOS_UPDATE_GOLDEN") == "1"
# a serve run with fixed paths, so the golden file does not depend on where the tests run
SITE = NginxSite(
    ipaddress.IPv4Address("10.99.0.1"),
    8080,
    Path("/srv/chaos/pxe"),
    Path("/run/chaos-serve"),
    "nobody",
    "nogroup",
)


def pxelinux_node() -> str:
    cluster, _ = load_cluster(ROOT / "tests" / "golden" / "all.yaml")
    ctx = BuildContext(
        cluster=cluster, nodes_dir=Path("/nodes"), out_dir=Path("/out"), cache_dir=Path("/cache")
    )
    return pxe.pxelinux_entry(ctx, cluster.nodes[0])


def pxelinux_local() -> str:
    cluster, _ = load_cluster(ROOT / "tests" / "golden" / "all.yaml")
    return pxe.local_disk_answers(cluster.nodes[0], "outside the night")[1]


@pytest.mark.parametrize(
    "name, text",
    [
        ("nginx.conf", lambda: nginx_conf(SITE)),
        ("pxelinux-node.cfg", pxelinux_node),
        ("pxelinux-local.cfg", pxelinux_local),
        ("pxelinux-default.cfg", lambda: pxe.PXELINUX_DEFAULT),
    ],
)
def test_host_configs_match_golden_files(name, text):
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(text())
    assert text() == golden.read_text(), f"{golden} differs; run make golden and review"


def test_a_value_the_template_lacks_is_a_render_error_naming_the_template():
    with pytest.raises(RenderError, match=r"templates/serve/nginx.conf.j2: .*'user'"):
        render_host("serve/nginx.conf.j2", {"header": "#"})
