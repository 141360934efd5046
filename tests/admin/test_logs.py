"""Boot answers from dnsmasq's log-dhcp lines and nginx's access log, judged by the night."""

from __future__ import annotations

import datetime as dt

from builder.admin.events import Kind
from builder.admin.logs import Follower, dnsmasq_event, nginx_event
from builder.night import night_of

EVENING = dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.UTC)  # 19:00 in Berlin: the night
NOON = dt.datetime(2026, 12, 1, 11, 0, tzinfo=dt.UTC)


def test_a_pxe_answer_in_the_night_is_the_cluster_boot(lab):
    line = "dnsmasq-dhcp[812]: 3853171512 PXE(br0) 10.99.0.12 52:54:00:99:00:12 undionly.kpxe"
    e = dnsmasq_event(lab, night_of(lab), line, EVENING)
    assert e is not None
    assert (e.kind, e.node, e.mac, e.address, e.detail, e.t) == (
        Kind.BOOT,
        "node02",
        "52:54:00:99:00:12",
        "10.99.0.12",
        "cluster via pxe",
        EVENING,
    )


def test_a_dhcp_ack_at_noon_is_the_local_disk(lab):
    line = "dnsmasq-dhcp: 1234 DHCPACK(br0) 10.99.0.13 52:54:00:99:00:13 node03"
    e = dnsmasq_event(lab, night_of(lab), line, NOON)
    assert e is not None and (e.node, e.detail) == ("node03", "disk via dhcpack")


def test_a_stranger_is_recorded_without_a_node(lab):
    line = "dnsmasq-dhcp[1]: 7 PXE(br0) 10.99.0.99 52:54:00:aa:bb:cc undionly.kpxe"
    e = dnsmasq_event(lab, night_of(lab), line, EVENING)
    assert e is not None and e.node == "" and e.detail == "disk via pxe"


def test_other_dnsmasq_lines_are_no_boot(lab):
    for line in (
        "dnsmasq-dhcp[812]: 3853171512 available DHCP subnet: 10.99.0.0/255.255.255.0",
        "dnsmasq-tftp[812]: sent /srv/undionly.kpxe to 10.99.0.12",
        "",
        "x" * 10000,
    ):
        assert dnsmasq_event(lab, night_of(lab), line, EVENING) is None


def test_the_per_mac_ipxe_answer_from_nginx(lab):
    line = (
        '10.99.0.11 [2026-11-30T19:00:01+01:00] "GET /mac-52-54-00-99-00-11.ipxe '
        'HTTP/1.1" 200 310 0.000 "OK" "iPXE/1.21.1"'
    )
    e = nginx_event(lab, night_of(lab), line)
    assert e is not None
    assert (e.node, e.detail, e.t) == (
        "node01",
        "cluster via http",
        dt.datetime(2026, 11, 30, 18, 0, 1, tzinfo=dt.UTC),
    )


def test_kernel_fetches_and_failures_are_no_boot_answer(lab):
    for line in (
        '10.99.0.11 [2026-11-30T19:00:01+01:00] "GET /vmlinuz HTTP/1.1" 200 9 0.1 "OK" "iPXE"',
        '10.99.0.11 [2026-11-30T19:00:01+01:00] "GET /mac-52-54-00-99-00-11.ipxe '
        'HTTP/1.1" 404 0 0.0 "OK" "iPXE"',
        "garbage",
    ):
        assert nginx_event(lab, night_of(lab), line) is None


def test_the_follower_reads_only_what_was_appended(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("old line\n")
    seen: list[str] = []
    f = Follower(log, seen.append)
    with log.open("a") as out:
        out.write("new one\nhalf")
    f.poll()
    assert seen == ["new one"]
    with log.open("a") as out:
        out.write(" done\n")
    f.poll()
    assert seen == ["new one", "half done"]
