"""Several tyd daemons on loopback (127.0.0.N each), real mutual TLS, certificates from
the project's PKI: joins converge, deaths and leaves propagate, seeds are not special."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

from helpers import address, converged, name, node_config, wait_for

from builder.pki import Pki
from tyd.daemon import Node
from tyd.member import Member


class Recorder:
    """A hook that remembers what it was asked to do."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def add(self, member: Member) -> None:
        self.events.append(("add", member.name))

    async def remove(self, member: Member) -> None:
        self.events.append(("remove", member.name))


def names(ids: range | list[int]) -> set[str]:
    return {name(i) for i in ids}


async def stop_all(nodes: list[Node]) -> None:
    await asyncio.gather(*(n.shutdown(leave=False) for n in nodes))


def test_sequential_joins_converge_and_export_the_map(pki: Pki, port: int, run_dir: Path) -> None:
    async def scenario() -> None:
        nodes: list[Node] = []
        try:
            for i in range(1, 6):
                node = Node(node_config(pki, i, port, run_dir))
                await node.start()
                nodes.append(node)
                await wait_for(
                    functools.partial(converged, list(nodes), names(range(1, i + 1))),
                    10,
                    f"{i} nodes to converge",
                )
            assert all(n.counters["refused"] == n.counters["malformed"] == 0 for n in nodes)
            await wait_for(
                lambda: (
                    (run_dir / "node03" / "hostfile").exists()
                    and len((run_dir / "node03" / "hostfile").read_text().splitlines()) == 5
                ),
                5,
                "node03's hostfile",
            )
            mosix = (run_dir / "node03" / "mosix.map").read_text()
            assert mosix == f"1 {address(1)} 5\n"
            doc = json.loads((run_dir / "node03" / "map.json").read_text())
            assert {m["name"] for m in doc["members"]} == names(range(1, 6))
            assert {m["fingerprint"] for m in doc["members"]} == {
                n.map.me.fingerprint for n in nodes
            }
        finally:
            await stop_all(nodes)

    asyncio.run(scenario())


def test_simultaneous_joins_of_eight_nodes_converge(pki: Pki, port: int, run_dir: Path) -> None:
    async def scenario() -> None:
        nodes = [Node(node_config(pki, i, port, run_dir, seeds=(1, 2))) for i in range(1, 9)]
        try:
            await asyncio.gather(*(n.start() for n in nodes))
            await wait_for(
                lambda: converged(nodes, names(range(1, 9))), 15, "8 simultaneous joins to converge"
            )
            versions = {
                tuple(sorted((m.name, m.fingerprint) for m in n.map.live() + [n.map.me]))
                for n in nodes
            }
            assert len(versions) == 1  # the same map everywhere
        finally:
            await stop_all(nodes)

    asyncio.run(scenario())


def test_killed_member_is_removed_from_every_map_and_hooks_run(
    pki: Pki, port: int, run_dir: Path
) -> None:
    async def scenario() -> None:
        recorders = [Recorder() for _ in range(4)]
        nodes = [Node(node_config(pki, i, port, run_dir), [recorders[i - 1]]) for i in range(1, 5)]
        try:
            await asyncio.gather(*(n.start() for n in nodes))
            await wait_for(lambda: converged(nodes, names(range(1, 5))), 10, "4 nodes")
            await nodes[2].shutdown(leave=False)  # node03 dies without a word
            survivors = [nodes[0], nodes[1], nodes[3]]
            await wait_for(
                lambda: converged(survivors, names([1, 2, 4])),
                10,
                "node03 to be removed everywhere",
            )
            watching = (recorders[0], recorders[1], recorders[3])
            await wait_for(
                lambda: all(("remove", "node03") in r.events for r in watching),
                5,
                "the remove hooks to run",
            )
            for rec in watching:
                assert rec.events.count(("add", "node03")) == 1
                assert rec.events.count(("remove", "node03")) == 1
        finally:
            await stop_all([nodes[0], nodes[1], nodes[3]])

    asyncio.run(scenario())


def test_leave_is_announced_and_faster_than_failure_detection(
    pki: Pki, port: int, run_dir: Path
) -> None:
    slow = {"suspect_after_seconds": 20, "remove_after_seconds": 40}

    async def scenario() -> None:
        nodes = [Node(node_config(pki, i, port, run_dir, **slow)) for i in range(1, 4)]
        try:
            await asyncio.gather(*(n.start() for n in nodes))
            await wait_for(lambda: converged(nodes, names(range(1, 4))), 10, "3 nodes")
            await nodes[1].shutdown(leave=True)
            await wait_for(
                lambda: converged([nodes[0], nodes[2]], names([1, 3])),
                3,
                "node02's LEAVE to reach everyone (far below remove_after)",
            )
        finally:
            await stop_all([nodes[0], nodes[2]])

    asyncio.run(scenario())


def test_a_node_joins_through_a_non_seed_after_the_seeds_die(
    pki: Pki, port: int, run_dir: Path
) -> None:
    async def scenario() -> None:
        cfgs = {i: node_config(pki, i, port, run_dir, seeds=(1, 2)) for i in range(1, 5)}
        nodes = {i: Node(cfgs[i]) for i in cfgs}
        try:
            await asyncio.gather(*(n.start() for n in nodes.values()))
            await wait_for(lambda: converged(nodes.values(), names(range(1, 5))), 10, "4 nodes")
            await nodes[4].shutdown(leave=True)  # node04 reboots its daemon later
            await nodes[1].shutdown(leave=False)
            await nodes[2].shutdown(leave=False)  # both seeds die
            await wait_for(
                lambda: converged([nodes[3]], names([3])), 10, "node03 to remove both seeds"
            )
            nodes[4] = Node(cfgs[4])  # knows node03 from its last map export
            await nodes[4].start()
            await wait_for(
                lambda: converged([nodes[3], nodes[4]], names([3, 4])),
                10,
                "node04 to join through node03",
            )
            assert nodes[4].welcomed >= {"node03"}
            assert nodes[4].counters["unreachable"] >= 2  # it did try the dead seeds first
        finally:
            await stop_all([nodes[3], nodes[4]])

    asyncio.run(scenario())
