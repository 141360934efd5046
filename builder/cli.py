"""chaos-build: the command line. The only place that turns errors into exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from chaosnode.console import say as log

from . import reference
from .config import load_cluster
from .errors import ChaosError, ConfigError
from .model import Cluster, ServeMode
from .night.model import NightModel
from .pki import ensure_ca, node_identity, pki_for, revoked_in_roster
from .render import render_cluster
from .resources import data_dir
from .security.model import SecurityModel
from .show import show_mac, show_node
from .smoke.scenario import BOOTS

EXIT_INVALID = 2
# the base image and package cache; one per host saves every checkout its own 5-minute build
DEFAULT_CACHE = os.environ.get("CHAOS_IMAGE_CACHE", "cache")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load(args: argparse.Namespace) -> Cluster:
    cluster, _ = load_cluster(args.config)
    return cluster


# -- commands -------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    cluster = load(args)
    pki = pki_for(cluster, args.config)
    for warning in pki.expiry_warnings(now()) + revoked_in_roster(cluster, pki):
        log(f"warning: {warning}")
    print(
        f"{args.config}: ok: cluster {cluster.cluster.name}, {len(cluster.nodes)} nodes, "
        f"scope {cluster.section(SecurityModel).security.scope.value}"
    )
    return 0


def cmd_pki(args: argparse.Namespace) -> int:
    cluster = load(args)
    pki = pki_for(cluster, args.config)
    sec = cluster.section(SecurityModel).security
    if args.pki_command == "init":
        created = ensure_ca(cluster, pki, now())
        print(f"{'created' if created else 'kept existing'} cluster CA in {pki.paths.root}")
    elif args.pki_command == "issue":
        names = [n.name for n in cluster.nodes] if args.all else args.nodes
        if not names:
            raise ChaosError("name the nodes to issue, or use --all")
        for name in names:
            _require_node(cluster, name, args.config)
            issued = pki.issue(
                node_identity(cluster, cluster.node(name)),
                cluster.cluster.name,
                now(),
                sec.cert_lifetime_days,
                force=args.force,
            )
            print(f"{name}: {'issued' if issued else 'current certificate kept'}")
    elif args.pki_command == "revoke":
        serials = pki.revoke(args.node, now(), sec.cert_lifetime_days)
        print(
            f"{args.node}: revoked serial {', '.join(f'{s:x}' for s in serials)}; it gets no "
            "new certificate (re-admit with `chaos-build pki issue NAME`); running nodes fetch "
            "the new CRL from the enrollment service within minutes"
        )
    elif args.pki_command == "crl":
        pki.write_crl(now(), sec.cert_lifetime_days)
        print(f"wrote {pki.paths.crl}")
    elif args.pki_command == "list":
        for info in pki.certificates():
            state = "REVOKED" if info.revoked else "valid"
            print(
                f"{info.name:20} {state:8} until {info.not_after:%Y-%m-%d} "
                f"sha256:{info.fingerprint[:16]}"
            )
        for warning in pki.expiry_warnings(now()):
            log(f"warning: {warning}")
    return 0


def _require_node(cluster: Cluster, name: str, config: Path) -> None:
    try:
        cluster.node(name)
    except KeyError:
        known = ", ".join(n.name for n in cluster.nodes)
        raise ChaosError(f"{config}: no node named {name!r}; known nodes: {known}") from None


def cmd_render(args: argparse.Namespace) -> int:
    cluster = load(args)
    if args.node:
        _require_node(cluster, args.node, args.config)
    pki = pki_for(cluster, args.config)
    for warning in revoked_in_roster(cluster, pki):
        log(f"warning: {warning}")
    start = time.perf_counter()
    names = render_cluster(cluster, pki, args.output, only=args.node)
    log(f"rendered {len(names)} node(s) into {args.output} in {time.perf_counter() - start:.2f}s")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    cluster, doc = load_cluster(args.config)
    at = args.at or now()
    if MAC_RE.match(args.node.lower().replace("-", ":")) and all(
        n.name != args.node for n in cluster.nodes
    ):
        print(show_mac(cluster, args.node, at))
        return 0
    _require_node(cluster, args.node, args.config)
    print(show_node(cluster, doc, args.node, at))
    return 0


def absolute(text: str) -> Path:
    """A path argument, made absolute against the folder the command runs in: children
    (dnsmasq, nginx, QEMU, ...) may change directory, so none of them gets a relative path."""
    return Path(text).expanduser().absolute()


def _instant(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time such as 2026-11-27T17:00+01:00"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add one, e.g. +01:00")
    return value


def cmd_reference(args: argparse.Namespace) -> int:
    print(reference.markdown() if args.markdown else reference.yaml_reference(), end="")
    return 0


def lab_interface(args: argparse.Namespace, cluster: Cluster, what: str) -> str:
    interface: str = args.interface or cluster.serve.interface
    if not interface:
        raise ChaosError(
            f"no interface to {what} on: set serve.interface in chaos.yaml or pass --interface"
        )
    return interface


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve  # noqa: PLC0415

    cluster = load(args)
    interface = lab_interface(args, cluster, "serve")
    mode = ServeMode(args.mode) if args.mode else None
    return serve(cluster, args.config, args.pxe, interface, args.run_dir, mode, args.http_port)


def cmd_wake(args: argparse.Namespace) -> int:
    from .night import wake  # noqa: PLC0415

    cluster = load(args)
    interface = lab_interface(args, cluster, "wake")
    nodes = wake.targets(cluster, args.nodes)
    stagger = (
        cluster.section(NightModel).schedule.wake_stagger_ms
        if args.stagger_ms is None
        else args.stagger_ms
    )
    count = wake.wake(nodes, interface, stagger)
    log(f"sent {count} Wake-on-LAN packet(s) on {interface}, {stagger} ms apart")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    from .smoke.runner import run_smoke  # noqa: PLC0415
    from .smoke.scenario import load_scenario  # noqa: PLC0415

    scenario = load_scenario(args.scenario or data_dir("scenarios") / "default/scenario.yaml")
    if args.config_given:
        scenario = dataclasses.replace(scenario, config=args.config)
    results = args.results / f"{scenario.name}-{args.boot}"
    return run_smoke(scenario, args.boot, results, args.cache, args.nodes, args.keep)


def cmd_enroll(args: argparse.Namespace) -> int:
    from .enroll import cli as enroll_cli  # noqa: PLC0415 - loads tpm2_pytss; only on use

    cluster = load(args)
    pki = pki_for(cluster, args.config)
    if args.enroll_command == "serve":
        return enroll_cli.serve(cluster, args.config, pki, args.address, args.port)
    if args.enroll_command == "pending":
        return enroll_cli.pending(pki)
    if args.enroll_command == "approve-boot":
        return enroll_cli.approve_boot(pki, args.fingerprint)
    return enroll_cli.approve(cluster, args.config, pki, args.ek_hash, args.node)


def cmd_status(args: argparse.Namespace) -> int:
    from .admin import cli as admin_cli  # noqa: PLC0415

    cluster = load(args)
    night = admin_cli.night_date(args.night) if args.night else None
    print(
        admin_cli.status(
            cluster, args.run_dir / "events.sqlite", now(), night, args.node, args.json
        ),
        end="",
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from .build import build  # noqa: PLC0415 - the image pipeline is heavy; load on use

    cluster = load(args)
    return build(cluster, args)


# -- parser ---------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chaos-build",
        description="Build a RAM-booted, IPsec-meshed lab cluster from chaos.yaml.",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path("chaos.yaml"),
        help="the cluster file (default: ./chaos.yaml)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    add("check", cmd_check, "validate chaos.yaml and warn about expiring certificates")
    sp = add("pki", cmd_pki, "manage the cluster CA and node certificates")
    psub = sp.add_subparsers(dest="pki_command", required=True)
    psub.add_parser("init", parents=[common], help="create the cluster CA (never replaces one)")
    issue = psub.add_parser("issue", parents=[common], help="issue node certificates")
    issue.add_argument("nodes", nargs="*")
    issue.add_argument("--all", action="store_true", help="every node in chaos.yaml")
    issue.add_argument("--force", action="store_true", help="re-issue even if current")
    revoke = psub.add_parser("revoke", parents=[common], help="revoke a node's certificate")
    revoke.add_argument("node")
    psub.add_parser("list", parents=[common], help="list node certificates")
    psub.add_parser("crl", parents=[common], help="re-sign the CRL")
    sp = add("render", cmd_render, "render every node's overlay tree")
    sp.add_argument("-o", "--output", type=absolute, default="build/nodes")
    sp.add_argument("--node", help="render only this node")
    sp = add(
        "show",
        cmd_show,
        "show one node's resolved settings and where each came from, "
        "or what serve answers a MAC now and when that changes",
    )
    sp.add_argument("node", metavar="NODE|MAC")
    sp.add_argument(
        "--at",
        type=_instant,
        help="judge the boot answer at this time (ISO 8601 with offset) instead of now",
    )
    sp = add("reference", cmd_reference, "print the commented reference chaos.yaml")
    sp.add_argument("--markdown", action="store_true", help="as a Markdown table")
    sp = add("serve", cmd_serve, "serve out/pxe to the lab (dnsmasq DHCP/TFTP + HTTP)")
    sp.add_argument("--pxe", type=absolute, default="out/pxe")
    sp.add_argument("--interface", help="override serve.interface")
    sp.add_argument("--mode", choices=["proxy", "isolated"], help="override serve.mode")
    sp.add_argument("--http-port", type=int, help="override serve.http_port")
    sp.add_argument(
        "--run-dir",
        type=absolute,
        default="build/serve",
        help="generated dnsmasq config and pid file",
    )
    sp = add(
        "wake",
        cmd_wake,
        "wake the lab's PCs (Wake-on-LAN on the lab interface): every node, or the named ones",
    )
    sp.add_argument("nodes", nargs="*", metavar="NODE")
    sp.add_argument("--interface", help="override serve.interface")
    sp.add_argument("--stagger-ms", type=int, help="override schedule.wake_stagger_ms")
    sp = add(
        "enroll",
        cmd_enroll,
        "the enrollment service, its TPM registry and the approvals of boots without a TPM",
    )
    esub = sp.add_subparsers(dest="enroll_command", required=True)
    es = esub.add_parser(
        "serve", parents=[common], help="run the enrollment service alone (Ctrl-C stops it)"
    )
    es.add_argument(
        "--address", help="listen on and certify this IPv4 address (default serve.address)"
    )
    es.add_argument("--port", type=int, help="override serve.enroll_port")
    esub.add_parser(
        "pending",
        parents=[common],
        help="list machines waiting for approval "
        "(unregistered TPMs and boots of nodes without a TPM)",
    )
    ea = esub.add_parser(
        "approve",
        parents=[common],
        help="register a pending machine's TPM for a node (edits security.tpm_registry)",
    )
    ea.add_argument("ek_hash", metavar="EK_HASH", help="sha256:... as `enroll pending` shows")
    ea.add_argument("--node", required=True, help="the node this machine is")
    eb = esub.add_parser(
        "approve-boot",
        parents=[common],
        help="approve one boot of a node "
        "without a TPM (attestation: approval) by the fingerprint on its "
        "console; single use, valid 15 min",
    )
    eb.add_argument(
        "fingerprint",
        metavar="FINGERPRINT",
        help="such as 3f2a-91bc-0d4e-7a11, as the node's console and `enroll pending` show it",
    )
    sp = add(
        "status",
        cmd_status,
        "every PC's state now or at the end of a night (booted, "
        "enrolled, joined, running jobs, left, back to disk) from serve's event record",
    )
    sp.add_argument("node", nargs="?", metavar="NODE")
    sp.add_argument(
        "--night",
        metavar="DATE",
        help="the night that began on DATE (YYYY-MM-DD), as it ended; default: tonight, now",
    )
    sp.add_argument("--json", action="store_true", help="as JSON")
    sp.add_argument(
        "--run-dir",
        type=absolute,
        default="build/serve",
        help="serve's run dir, where its event record is",
    )
    sp = add("smoke", cmd_smoke, "boot a private QEMU lab from the artifacts and check it")
    sp.add_argument(
        "--scenario", type=absolute, help="a scenario.yaml (default: the shipped scenarios/default)"
    )
    sp.add_argument("--boot", choices=BOOTS, default="pxe")
    sp.add_argument("--nodes", type=int, help="boot only the first N nodes of the scenario")
    sp.add_argument("--results", type=absolute, default="results")
    sp.add_argument(
        "--keep", action="store_true", help="keep the lab running after the checks until Ctrl-C"
    )
    sp.add_argument(
        "--cache",
        type=absolute,
        default=DEFAULT_CACHE,
        help="download and base-image cache (default: $CHAOS_IMAGE_CACHE or ./cache)",
    )
    sp = add("build", cmd_build, "check, issue certificates, render and build the images")
    sp.add_argument("-o", "--output", type=absolute, default="out")
    sp.add_argument("--node", help="build a per-node ISO for this node only")
    sp.add_argument(
        "--cache",
        type=absolute,
        default=DEFAULT_CACHE,
        help="download and base-image cache (default: $CHAOS_IMAGE_CACHE or ./cache)",
    )
    sp.add_argument(
        "--work",
        type=absolute,
        default="build",
        help="where the rendered node overlays go (default: ./build)",
    )
    sp.add_argument(
        "--render-only", action="store_true", help="stop after rendering the overlays (no image)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    args.config_given = any(
        a in ("-c", "--config") or a.startswith("--config=")
        for a in (argv if argv is not None else sys.argv[1:])
    )
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            log(str(problem))
        log(f"{len(exc.problems)} problem(s); nothing was changed")
        if args.debug:
            traceback.print_exc()
        return EXIT_INVALID
    except ChaosError as exc:
        log(f"error: {exc}")
        if args.debug:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        log("interrupted; the last good output is left in place")
        return 130
    except Exception as exc:  # a bug: say so plainly, trace only with --debug
        log(f"internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)")
        if args.debug:
            traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
