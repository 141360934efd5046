"""tyd's model section: chaos.yaml's `tyd:` (port, seeds, the timers), declared once here and
named by the tyd feature (builder/features/tyd.py), which the loader, the reference and `show`
ask. Its checks: builder/tyd/checks.py."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import setting


@dataclass(frozen=True, kw_only=True)
class TydSection:
    port: int = setting(
        7411, "tyd's TCP port (mutual TLS, reachable only through IPsec)", min=1024, max=65535
    )
    seeds: tuple[str, ...] = setting(
        (), "nodes that act as the first Philips; empty: the first node", example=["node01"]
    )
    heartbeat_seconds: int = setting(5, "interval between heartbeats", min=1, max=300)
    suspect_after_seconds: int = setting(
        15, "silence after which a member is suspect", min=2, max=3600
    )
    remove_after_seconds: int = setting(
        30, "silence after which a member is removed", min=3, max=7200
    )


@dataclass(frozen=True, kw_only=True)
class TydModel:
    """tyd's top-level chaos.yaml keys."""

    tyd: TydSection = setting(TydSection(), "the discovery daemon")
