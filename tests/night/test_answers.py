"""Boot answers by the clock (injected): a member and an unknown MAC inside, outside and at
the edges of the night, across midnight, a weekend and a daylight-saving change; the served
tree's files and their atomic replacement at an edge."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench.pxe_clients import write_tree
from builder.image.pxe import answer_paths, mac_hyphen
from builder.model import Cluster, ServeMode
from builder.night import cert_hours, night_of
from builder.night.answers import answer_for, assemble, refresh
from builder.night.model import NightModel, ScheduleSection, Weekday
from builder.serve import NightEdges

TZ = ZoneInfo("Europe/Berlin")
STRANGER = "52:54:00:aa:bb:cc"


def at(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=TZ)


@pytest.fixture
def lab(default_cluster: Cluster) -> Cluster:
    schedule = ScheduleSection(
        windows=("17:00-09:00",), time_zone="Europe/Berlin", whole_days=(Weekday.SAT, Weekday.SUN)
    )
    return default_cluster.with_section(NightModel(schedule=schedule))


@pytest.mark.parametrize(
    ("when", "cluster_boot", "until"),
    [
        (at(2026, 11, 25, 12), False, at(2026, 11, 25, 17)),  # Wednesday midday
        (at(2026, 11, 25, 16, 59, 59), False, at(2026, 11, 25, 17)),  # a second before
        (at(2026, 11, 25, 17), True, at(2026, 11, 26, 9)),  # the edge: the night
        (at(2026, 11, 26, 0, 30), True, at(2026, 11, 26, 9)),  # across midnight
        (at(2026, 11, 26, 9), False, at(2026, 11, 26, 17)),  # the morning edge
        (at(2026, 11, 28, 13), True, at(2026, 11, 30, 9)),  # Saturday: all day
        (at(2026, 10, 25, 8, 59), True, at(2026, 10, 26, 9)),  # DST change on a Sunday
        (at(2026, 3, 30, 8, 59), True, at(2026, 3, 30, 9)),  # Monday after spring change
    ],
)
def test_a_member_gets_the_cluster_inside_and_its_disk_outside(lab, when, cluster_boot, until):
    node = lab.nodes[0]
    answer = answer_for(lab, night_of(lab), node.mac, when)
    assert (answer.node, answer.cluster_boot, answer.until) == (node.name, cluster_boot, until)


@pytest.mark.parametrize(
    "when",
    [at(2026, 11, 25, 12), at(2026, 11, 25, 17), at(2026, 11, 28, 13), at(2026, 10, 25, 2, 30)],
)
def test_an_unknown_mac_gets_the_local_disk_at_any_hour(lab, when):
    answer = answer_for(lab, night_of(lab), STRANGER, when)
    assert answer.node is None and not answer.cluster_boot
    assert "no node of this cluster" in answer.describe()


def test_without_a_schedule_members_boot_the_cluster_at_any_hour(default_cluster):
    answer = answer_for(
        default_cluster,
        night_of(default_cluster),
        default_cluster.nodes[1].mac.upper(),
        at(2026, 11, 25, 12),
    )
    assert answer.cluster_boot and answer.until is None
    assert "at any hour" in answer.describe()


def build_tree(cluster: Cluster, pxe: Path) -> None:
    write_tree(
        pxe,
        [(n.name, mac_hyphen(n)) for n in cluster.nodes],
        kernel=4096,
        initrd=4096,
        cpio=1024,
        loader=100,
    )
    for node in cluster.nodes:
        for rel in answer_paths(node)[1:]:
            (pxe / rel).parent.mkdir(parents=True, exist_ok=True)
            (pxe / rel).write_text(f"cluster boot of {node.name}\n")


def test_served_tree_holds_day_answers_then_night_links(lab, tmp_path):
    pxe, tree = tmp_path / "pxe", tmp_path / "tree"
    build_tree(lab, pxe)
    night = night_of(lab)
    assert not assemble(tree, pxe, lab, night, at(2026, 11, 25, 12))
    node = lab.nodes[0]
    ipxe, pxelinux, grub = (tree / rel for rel in answer_paths(node))
    assert "sanboot --no-describe --drive 0x80" in ipxe.read_text()
    assert "iseq ${platform} efi && exit" in ipxe.read_text()
    assert "LOCALBOOT 0" in pxelinux.read_text()
    assert "reboot" in grub.read_text() and "exit" not in grub.read_text(), (
        "after shim ran, the day OS must not boot in the same boot (BitLocker)"
    )
    assert "until 2026-11-25T17:00:00+01:00" in ipxe.read_text()
    assert (tree / "vmlinuz").read_bytes() == (pxe / "vmlinuz").read_bytes(), "bulk linked"
    assert (tree / "vmlinuz").is_symlink()
    before = ipxe.stat().st_ino
    assert refresh(tree, pxe, lab, night, at(2026, 11, 25, 17))
    for rel in answer_paths(node):
        assert (tree / rel).read_bytes() == (pxe / rel).read_bytes(), rel
    assert ipxe.lstat().st_ino != before, "replaced by rename, never rewritten in place"
    assert not list(tree.rglob(".*.new")), "no temporary file left behind"
    assert not refresh(tree, pxe, lab, night, at(2026, 11, 26, 9))
    assert "sanboot" in ipxe.read_text()
    (pxe / answer_paths(node)[2]).unlink()  # a build without GRUB's answer
    assert refresh(tree, pxe, lab, night, at(2026, 11, 26, 17))
    assert not grub.exists(), "no stale day answer at night"


def test_serve_rewrites_the_answers_when_the_clock_passes_an_edge(lab, tmp_path):
    pxe, tree = tmp_path / "pxe", tmp_path / "tree"
    build_tree(lab, pxe)
    now = [at(2026, 11, 25, 16, 59, 58)]
    edges = NightEdges(lab, tree, pxe, clock=lambda: now[0])
    ipxe = tree / answer_paths(lab.nodes[2])[0]
    assert "sanboot" in ipxe.read_text()
    assert not edges.tick(), "nothing changes before the edge"
    now[0] = at(2026, 11, 25, 17)
    assert edges.tick(), "the night begins"
    assert ipxe.read_bytes() == (pxe / answer_paths(lab.nodes[2])[0]).read_bytes()
    assert edges.next == at(2026, 11, 26, 9)
    now[0] = at(2026, 11, 26, 9, 0, 1)
    assert not edges.tick() and "sanboot" in ipxe.read_text()


def test_dnsmasq_gets_the_night_tag_only_inside_the_night(lab, tmp_path):
    pxe, tree, hosts = tmp_path / "pxe", tmp_path / "tree", tmp_path / "hosts" / "nodes"
    build_tree(lab, pxe)
    now = [at(2026, 11, 25, 16, 59, 58)]
    edges = NightEdges(lab, tree, pxe, clock=lambda: now[0], hosts=(hosts, ServeMode.ISOLATED))
    reloads = []
    edges.reload = lambda: reloads.append(now[0])
    tagged = [ln for ln in hosts.read_text().splitlines() if ",set:night," in ln]
    assert len(tagged) == sum(n.always_on for n in lab.nodes), "by day: no boot file"
    now[0] = at(2026, 11, 25, 17)
    assert edges.tick() and reloads == [now[0]], "dnsmasq rereads its hosts at the edge"
    assert hosts.read_text().count(",set:night,") == len(lab.nodes)
    now[0] = at(2026, 11, 26, 9)
    assert not edges.tick() and len(reloads) == 2
    assert hosts.read_text().count(",set:night,") == sum(n.always_on for n in lab.nodes)


def test_certificates_expire_shortly_after_the_night(lab, default_cluster):
    # issued at 20:00 on a Wednesday: the night ends at 09:00, plus the hour of margin
    assert cert_hours(lab, at(2026, 11, 25, 20, 0)) == pytest.approx(14.0)
    # at 17:10 that would be 16 h 50 min: node_cert_hours (16) bounds it, still past 09:00
    assert cert_hours(lab, at(2026, 11, 25, 17, 10)) == 16
    assert cert_hours(lab, at(2026, 11, 26, 8, 0)) == pytest.approx(2.0)
    # a Friday evening: the weekend is night; node_cert_hours (16) bounds it
    assert cert_hours(lab, at(2026, 11, 27, 17, 0)) == 16
    assert cert_hours(lab, at(2026, 11, 25, 12, 0)) == 16, "outside the night: the setting"
    assert cert_hours(default_cluster, at(2026, 11, 25, 17, 10)) == 16, "no schedule"


def test_show_says_what_a_mac_gets_and_until_when(capsys):
    from chaostest import ROOT  # noqa: PLC0415

    from builder.cli import main  # noqa: PLC0415

    config = str(ROOT / "tests/golden/all.yaml")
    assert main(["show", "-c", config, "52-54-00-00-00-02", "--at", "2026-11-27T17:30+01:00"]) == 0
    assert capsys.readouterr().out == (
        "52:54:00:00:00:02 (node beta) gets the cluster boot until 2026-11-30T09:00:00+01:00\n"
    ), "the weekend"
    assert main(["show", "-c", config, "alpha", "--at", "2026-11-27T16:30+01:00"]) == 0
    assert "gets the local disk until 2026-11-27T17:00:00+01:00" in capsys.readouterr().out
    assert main(["show", "-c", config, "52:54:00:00:00:09"]) == 0
    assert "no node of this cluster) gets the local disk at any hour" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["show", "-c", config, "alpha", "--at", "2026-11-27T16:30"])
    assert exc.value.code == 2 and "has no UTC offset" in capsys.readouterr().err


def always_on_lab(lab: Cluster) -> Cluster:
    head = dataclasses.replace(
        lab.nodes[0], always_on=True, state_disk="/dev/disk/by-id/virtio-chaos-state"
    )
    return dataclasses.replace(lab, nodes=(head, *lab.nodes[1:]))


@pytest.mark.parametrize("when", [at(2026, 11, 25, 12), at(2026, 11, 25, 17), at(2026, 11, 26, 9)])
def test_the_always_on_head_boots_the_cluster_at_any_hour(lab, when):
    cluster = always_on_lab(lab)
    night = night_of(cluster)
    head = answer_for(cluster, night, cluster.nodes[0].mac, when)
    assert head.cluster_boot and head.until is None
    pc = answer_for(cluster, night, cluster.nodes[1].mac, when)
    assert pc.cluster_boot == night.inside(when)  # type: ignore[union-attr]


def test_served_tree_gives_the_always_on_head_its_cluster_boot_by_day(lab, tmp_path):
    cluster = always_on_lab(lab)
    pxe, tree = tmp_path / "pxe", tmp_path / "tree"
    build_tree(cluster, pxe)
    assert not assemble(tree, pxe, cluster, night_of(cluster), at(2026, 11, 25, 12))
    head, pc = (answer_paths(n) for n in cluster.nodes[:2])
    for rel in head[1:]:
        assert (tree / rel).read_bytes() == (pxe / rel).read_bytes(), rel
    assert "sanboot" in (tree / pc[0]).read_text()  # the lab PC boots its disk by day
