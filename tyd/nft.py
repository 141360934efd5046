"""Firewall adapter: keep the nftables set of cluster peers in step with the map.

Runs `nft add|delete element FAMILY TABLE SET { ADDR }` as an argv list (no shell); a batch
of changes is one `nft -f -` transaction. Addresses of static peers are in the rendered
ruleset already and are never deleted.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

from .errors import HookError
from .hooks import Failure, apply_one
from .member import Member
from .membership import Change, ChangeKind


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

    def script_lines(self, change: Change) -> list[str]:
        """One change as lines of an nft script. A removal adds the element first, so that
        deleting an element already gone cannot fail the whole transaction (nft 1.0.6 has
        no `destroy`)."""
        address = change.member.address
        element = f"element {self.family} {self.table} {self.set_name} {{ {address} }}"
        if change.kind is ChangeKind.ADD:
            return [f"add {element}"]
        if address in self.static_peers:
            return []
        return [f"add {element}", f"delete {element}"]

    async def apply_batch(self, changes: Sequence[Change]) -> list[Failure]:
        script = [line for change in changes for line in self.script_lines(change)]
        if not script:
            return []
        try:
            await self._run([*self.prefix, self.nft, "-f", "-"], "\n".join(script) + "\n")
            return []
        except HookError:  # one transaction: nothing applied; find who failed, one by one
            failures: list[Failure] = []
            for change in changes:
                try:
                    await apply_one(self, change)
                except HookError as exc:
                    failures.append((change, exc))
            return failures

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

    async def _run(self, argv: list[str], script: str | None = None) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL if script is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise HookError(f"{argv[0]}: cannot run: {exc.strerror}") from None
        try:
            data = None if script is None else script.encode()
            _, err = await asyncio.wait_for(proc.communicate(data), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise HookError(f"{' '.join(argv)}: timed out after {self.timeout}s") from None
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip()[-300:]
            raise HookError(f"{' '.join(argv)}: exit {proc.returncode}: {tail}")
