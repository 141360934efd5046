"""The hook runner: applies map changes to the adapters, one at a time, in order.

A hook is anything with `async add(member)` and `async remove(member)`. A failing hook is
logged and counted; it never stops the daemon or the other hooks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from .member import Member
from .membership import Change, ChangeKind


class Hook(Protocol):
    name: str

    async def add(self, member: Member) -> None: ...

    async def remove(self, member: Member) -> None: ...


class HookRunner:
    def __init__(
        self,
        hooks: Sequence[Hook],
        log: logging.Logger,
        on_error: Callable[[], None],
        max_queue: int = 8192,
    ) -> None:
        self.hooks = list(hooks)
        self._log = log
        self._on_error = on_error
        self._queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=max_queue)
        self._pending: collections.Counter[str] = collections.Counter()

    def submit(self, change: Change) -> None:
        if not self.hooks:
            return
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self._log.error("hook queue full; dropped %s %s", change.kind.value, change.member.name)
            self._on_error()
            return
        self._pending[change.member.name] += 1

    def settled(self, name: str) -> bool:
        """Have the hooks applied every change of this member? A peer tyd learned at run
        time has its firewall element and IPsec connection only then: talking to it earlier
        would send our first packets before the trap policy that protects them exists."""
        return name not in self._pending

    async def run(self) -> None:
        while True:
            change = await self._queue.get()
            try:
                await self.apply(change)
            finally:
                name = change.member.name
                self._pending[name] -= 1
                if self._pending[name] <= 0:
                    del self._pending[name]
                self._queue.task_done()

    async def drain(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            self._log.warning("hooks still busy after %.0fs", timeout)

    async def apply(self, change: Change) -> None:
        for hook in self.hooks:
            try:
                if change.kind is ChangeKind.ADD:
                    await hook.add(change.member)
                else:
                    await hook.remove(change.member)
            except Exception as exc:  # an adapter failure must not stop the daemon
                self._log.error(
                    "hook %s: %s %s (%s) failed: %s",
                    hook.name,
                    change.kind.value,
                    change.member.name,
                    change.member.address,
                    exc,
                )
                self._on_error()
