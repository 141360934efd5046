"""The hook runner: applies map changes to the adapters in order.

A hook is anything with `async add(member)` and `async remove(member)`. A hook that can apply
many changes at once (one `nft -f` transaction, one VICI session) also has `apply_batch`: the
runner hands it every change queued so far (a node joining a lab of 500 learns 499 peers at
once), in order. A failing hook is logged and counted, per member; it never stops the daemon
or the other hooks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from .member import Member
from .membership import Change, ChangeKind

Failure = tuple[Change, Exception]
MAX_BATCH = 512  # changes applied in one go (one nft transaction, one VICI session)


class Hook(Protocol):
    name: str

    async def add(self, member: Member) -> None: ...

    async def remove(self, member: Member) -> None: ...


@runtime_checkable
class BatchHook(Hook, Protocol):
    async def apply_batch(self, changes: Sequence[Change]) -> list[Failure]:
        """Apply changes in order; return the ones that failed, each with its error."""
        ...


async def apply_one(hook: Hook, change: Change) -> None:
    if change.kind is ChangeKind.ADD:
        await hook.add(change.member)
    else:
        await hook.remove(change.member)


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
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.apply_batch(batch)
            finally:
                for change in batch:
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
        await self.apply_batch([change])

    async def apply_batch(self, changes: Sequence[Change]) -> None:
        for hook in self.hooks:
            for change, exc in await self._through(hook, changes):
                self._log.error(
                    "hook %s: %s %s (%s) failed: %s",
                    hook.name,
                    change.kind.value,
                    change.member.name,
                    change.member.address,
                    exc,
                )
                self._on_error()

    @staticmethod
    async def _through(hook: Hook, changes: Sequence[Change]) -> list[Failure]:
        if isinstance(hook, BatchHook) and len(changes) > 1:
            try:
                return await hook.apply_batch(changes)
            except Exception as exc:  # an adapter failure must not stop the daemon
                return [(change, exc) for change in changes]
        failures: list[Failure] = []
        for change in changes:
            try:
                await apply_one(hook, change)
            except Exception as exc:  # an adapter failure must not stop the daemon
                failures.append((change, exc))
        return failures
