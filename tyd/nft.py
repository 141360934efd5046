"""Firewall adapter: keep the nftables set of cluster peers in step with the map.

Runs `nft add|delete element FAMILY TABLE SET { ADDR }` as an argv list (no shell).
Addresses of static peers are in the rendered ruleset already and are never deleted.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

from .errors import HookError
from .member import Member


class NftSetHook:
    name = "nft"

    def __init__(
        self,
        table: str,
        set_name: str,
        static_peers: frozenset[ipaddress.IPv4Address] = frozenset(),
        nft: str = "nft",
        prefix: Sequence[str] = (),
        timeout: float = 10.0,
    ) -> None:
        self.family, self.table = table.split()
        self.set_name = set_name
        self.static_peers = static_peers
        self.nft = nft
        self.prefix = tuple(prefix)  # e.g. ("ip", "netns", "exec", NS) in tests
        self.timeout = timeout

    def argv(self, verb: str, address: ipaddress.IPv4Address) -> list[str]:
        return [
            *self.prefix,
            self.nft,
            verb,
            "element",
            self.family,
            self.table,
            self.set_name,
            "{",
            str(address),
            "}",
        ]

    async def add(self, member: Member) -> None:
        await self._run(self.argv("add", member.address))

    async def remove(self, member: Member) -> None:
        if member.address in self.static_peers:
            return
        try:
            await self._run(self.argv("delete", member.address))
        except HookError as exc:
            if "No such file or directory" not in str(exc):  # already gone: fine
                raise

    async def _run(self, argv: list[str]) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise HookError(f"{argv[0]}: cannot run: {exc.strerror}") from None
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise HookError(f"{' '.join(argv)}: timed out after {self.timeout}s") from None
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip()[-300:]
            raise HookError(f"{' '.join(argv)}: exit {proc.returncode}: {tail}")
