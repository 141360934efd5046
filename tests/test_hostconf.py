"""The serve host's own configs, rendered from templates/ (builder/hostconf.py): golden files
made from the real code path. Update after an intended change: make golden."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from pathlib import Path

import pytest
from chaostest import ROOT

from builder.config import load_cluster
from builder.errors import RenderError
from builder.hostconf import render_host
from builder.image import iso, pxe, stage
from builder.image.context import BuildContext
from builder.model import ServeMode
from builder.nginx import NginxSite, nginx_conf
from builder.serve import ServePlan, dhcp_hosts, dnsmasq_conf

GOLDEN = ROOT / "tests" / "golden" / "serve"
TEMPLATES = ROOT / "templates"
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


def golden_cluster():
    return load_cluster(ROOT / "tests" / "golden" / "all.yaml")[0]


def golden_ctx() -> BuildContext:
    return BuildContext(
        cluster=golden_cluster(),
        nodes_dir=Path("/nodes"),
        out_dir=Path("/out"),
        cache_dir=Path("/cache"),
    )


def pxelinux_node() -> str:
    ctx = golden_ctx()
    return pxe.pxelinux_entry(ctx, ctx.cluster.nodes[0])


def pxelinux_local() -> str:
    return pxe.local_disk_answers(golden_cluster().nodes[0], "outside the night")[1]


def ipxe_node() -> str:
    ctx = golden_ctx()
    return pxe.ipxe_script(ctx, ctx.cluster.nodes[0])


def grub_node() -> str:
    ctx = golden_ctx()
    return pxe.grub_net_entry(ctx, ctx.cluster.nodes[0])


def grub_local() -> str:
    return pxe.local_disk_answers(golden_cluster().nodes[0], "outside the night")[2]


def ipxe_local() -> str:
    return pxe.local_disk_answers(golden_cluster().nodes[0], "outside the night")[0]


def stage_init() -> str:
    # two modules, the dependency first (insmod_order: tests/image/test_stage.py)
    modules = ["kernel/net/core/failover.ko", "kernel/drivers/net/virtio_net.ko"]
    return stage.stage_init(modules, hashlib.sha256(b"the root").hexdigest())


def serve_plan(mode: ServeMode) -> ServePlan:
    return ServePlan(
        "br0",
        ipaddress.IPv4Address("10.99.0.1"),
        Path("/srv/chaos/pxe"),
        8080,
        mode,
        hosts_file=Path("/run/chaos-serve/dhcp-hosts"),
    )


def dnsmasq(mode: ServeMode):
    return lambda: dnsmasq_conf(golden_cluster(), serve_plan(mode))


def hosts(mode: ServeMode):
    # the first node inside its night, the others not
    return lambda: dhcp_hosts(golden_cluster(), mode, [golden_cluster().nodes[0].name])


@pytest.mark.parametrize(
    "name, text",
    [
        ("nginx.conf", lambda: nginx_conf(SITE)),
        ("pxelinux-node.cfg", pxelinux_node),
        ("pxelinux-local.cfg", pxelinux_local),
        ("pxelinux-default.cfg", lambda: pxe.PXELINUX_DEFAULT),
        ("node.ipxe", ipxe_node),
        ("local-disk.ipxe", ipxe_local),
        ("boot.ipxe", lambda: pxe.DISPATCH_SCRIPT),
        ("grub-net.cfg", lambda: pxe.GRUB_NET_CFG),
        ("grub-node.cfg", grub_node),
        ("grub-local.cfg", grub_local),
        ("isolinux.cfg", lambda: iso.isolinux_cfg(golden_ctx())),
        ("dnsmasq-isolated.conf", dnsmasq(ServeMode.ISOLATED)),
        ("dnsmasq-proxy.conf", dnsmasq(ServeMode.PROXY)),
        ("dhcp-hosts-isolated", hosts(ServeMode.ISOLATED)),
        ("dhcp-hosts-proxy", hosts(ServeMode.PROXY)),
        ("stage-init", stage_init),
        ("stage-udhcpc.script", lambda: stage.UDHCPC),
    ],
)
def test_host_configs_match_golden_files(name, text):
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(text())
    assert text() == golden.read_text(), f"{golden} differs; run make golden and review"


def test_every_host_template_has_a_golden_file():
    """A template under templates/ that no golden test renders is a template nobody checks."""
    rendered = {
        "serve/nginx.conf.j2",
        "serve/dnsmasq.conf.j2",
        "serve/dhcp-hosts.j2",
        "pxe/pxelinux.cfg.j2",
        "pxe/node.ipxe.j2",
        "pxe/local-disk.ipxe.j2",
        "pxe/boot.ipxe.j2",
        "pxe/grub.cfg.j2",
        "pxe/grub-node.cfg.j2",
        "pxe/grub-local-disk.cfg.j2",
        "iso/isolinux.cfg.j2",
        "stage/init.j2",
        "stage/udhcpc.script.j2",
        "iso/grub.cfg.j2",  # golden tests/golden/iso/grub.cfg (tests/measured/test_iso_tree.py)
    }
    found = {p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.j2")}
    assert found == rendered


def test_a_value_the_template_lacks_is_a_render_error_naming_the_template():
    with pytest.raises(RenderError, match=r"templates/serve/nginx.conf.j2: .*'user'"):
        render_host("serve/nginx.conf.j2", {"header": "#"})
