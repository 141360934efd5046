#!/usr/bin/env python3
"""Everything the builder renders, into one folder, for a byte-for-byte comparison around a
refactoring: every valid cluster file (chaos.yaml and each under tests/) with each node's
templates, `show`, its packages and units, the serve host's dnsmasq and hosts file, the PXE
answers (iPXE, pxelinux, GRUB, the local disk's) and the ISO's loader configs; the reference;
and the message of every file that does not load (tests/invalid/ among them).

    python3 bench/render_all.py /tmp/before          # on the old commit
    python3 bench/render_all.py /tmp/after           # on the new one
    diff -r /tmp/before /tmp/after                   # nothing: the outputs are the same
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
from pathlib import Path

from builder.config import load_cluster
from builder.errors import ConfigError
from builder.features import disabled_units, enabled_units, links, node_context, packages
from builder.image import iso, pxe
from builder.image.context import BuildContext
from builder.model import Cluster, ServeMode
from builder.nginx import NginxSite, nginx_conf
from builder.reference import markdown, yaml_reference
from builder.render import environment, render_templates, template_names
from builder.serve import ServePlan, dhcp_hosts, dnsmasq_conf
from builder.show import cluster_rows, show_node

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 12, 2, 20, 0, tzinfo=dt.UTC)  # a fixed hour: `show` names the answer


class Out:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def put(self, rel: str, value: object) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value if isinstance(value, str) else repr(value))
        self.count += 1


def node_files(out: Out, base: str, cluster: Cluster, doc: object, ctx: BuildContext) -> None:
    env, names = environment(), template_names()
    for node in cluster.nodes:
        for rel, data in render_templates(node_context(cluster, node), env, names).items():
            out.put(f"{base}/nodes/{node.name}/{rel}", data.data.decode())
        out.put(f"{base}/nodes/{node.name}.show", show_node(cluster, doc, node.name, NOW))  # type: ignore[arg-type]
        for i, answer in enumerate(pxe.local_disk_answers(node, "outside the night")):
            out.put(f"{base}/pxe/{node.name}.local{i}", answer)
        out.put(f"{base}/pxe/{node.name}.ipxe", pxe.ipxe_script(ctx, node))
        out.put(f"{base}/pxe/{node.name}.pxelinux", pxe.pxelinux_entry(ctx, node))
        out.put(f"{base}/pxe/{node.name}.grub", pxe.grub_net_entry(ctx, node))


def cluster_files(out: Out, base: str, path: Path) -> None:
    cluster, doc = load_cluster(path)
    out.put(f"{base}/packages", sorted(set(packages(cluster))))
    out.put(f"{base}/units", (enabled_units(), disabled_units(), links(cluster)))
    out.put(f"{base}/rows", cluster_rows(cluster, doc))
    ctx = BuildContext(
        cluster=cluster, nodes_dir=Path("/nodes"), out_dir=Path("/out"), cache_dir=Path("/cache")
    )
    node_files(out, base, cluster, doc, ctx)
    out.put(f"{base}/iso/isolinux.cfg", iso.isolinux_cfg(ctx))
    out.put(f"{base}/iso/grub.cfg", iso.grub_cfg(ctx))
    for mode in ServeMode:
        plan = ServePlan(
            "br0",
            ipaddress.IPv4Address("10.99.0.1"),
            Path("/srv/pxe"),
            8080,
            mode,
            hosts_file=Path("/run/h"),
        )
        out.put(f"{base}/serve/dnsmasq-{mode.value}", dnsmasq_conf(cluster, plan))
        hosts = dhcp_hosts(cluster, mode, [cluster.nodes[0].name])
        out.put(f"{base}/serve/hosts-{mode.value}", hosts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="an empty or new folder")
    out = Out(parser.parse_args().out)
    out.put("reference.yaml", yaml_reference())
    out.put("reference.md", markdown())
    out.put("pxe/dispatch", pxe.DISPATCH_SCRIPT)
    out.put("pxe/default", pxe.PXELINUX_DEFAULT)
    out.put("pxe/grubnet", pxe.GRUB_NET_CFG)
    site = NginxSite(
        ipaddress.IPv4Address("10.99.0.1"), 8080, Path("/srv"), Path("/run"), "nobody", "nogroup"
    )
    out.put("nginx", nginx_conf(site))
    valid = invalid = 0
    for path in [ROOT / "chaos.yaml", *sorted((ROOT / "tests").rglob("*.yaml"))]:
        rel = path.relative_to(ROOT).as_posix()
        try:
            cluster_files(out, f"valid/{rel}", path)
            valid += 1
        except ConfigError as exc:  # tests/invalid/, and scenario files (not cluster files)
            out.put(f"errors/{rel}.txt", str(exc))
            invalid += 1
    print(f"{out.count} files: {valid} cluster files rendered, {invalid} refused with a message")


if __name__ == "__main__":
    main()
