"""`tyd --config PATH` runs the daemon; `tyd status` prints the local map and counters."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import config, status
from .adapters import build_hooks
from .daemon import Node
from .errors import TydError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tyd",
        description="chaos discovery daemon: authenticated Terrence-and-Philip "
        "joins over mutual TLS, adding peers to IPsec and the firewall",
    )
    p.add_argument(
        "--config", type=Path, default=None, help=f"tyd config file (default {config.DEFAULT_PATH})"
    )
    p.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    sub = p.add_subparsers(dest="command")
    st = sub.add_parser("status", help="print the local map and counters")
    st.add_argument(
        "--config",
        dest="status_config",
        type=Path,
        default=None,
        help=f"tyd config file (default {config.DEFAULT_PATH})",
    )
    st.add_argument("--json", action="store_true", help="print the raw status document")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        stream=sys.stderr,
        format="%(name)s %(levelname)s: %(message)s",
    )
    path = getattr(args, "status_config", None) or args.config or config.DEFAULT_PATH
    try:
        cfg = config.load(path)
        if args.command == "status":
            doc = status.read(cfg.exports.status)
            sys.stdout.write(json.dumps(doc, indent=1) + "\n" if args.json else status.render(doc))
            return 0
        return asyncio.run(_run(cfg))
    except TydError as exc:
        if args.debug:
            raise
        print(f"tyd: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


async def _run(cfg: config.Config) -> int:
    node = Node(cfg, build_hooks(cfg))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: node.reload_trust(force=True))
    await node.run()
    return 0
