"""The smoke lab reads dnsmasq's own log to show what a member was answered by day."""

from __future__ import annotations

from builder.smoke.dhcplog import dhcp_answers, last_answer

# lines as dnsmasq 2.90 logged them in tests/test_serve.py (night, then day), trimmed
NIGHT = """\
dnsmasq-dhcp[9542]: 571408840 vendor class: PXEClient:Arch:00000:UNDI:002001
dnsmasq-dhcp[9542]: 571408840 DHCPDISCOVER(lab0) 52:54:00:99:00:11
dnsmasq-dhcp[9542]: 571408840 tags: night, known, lab0
dnsmasq-dhcp[9542]: 571408840 DHCPOFFER(lab0) 10.99.0.11 52:54:00:99:00:11
dnsmasq-dhcp[9542]: 571408840 bootfile name: undionly.kpxe
dnsmasq-dhcp[9542]: 571408840 next server: 10.99.0.1
dnsmasq-tftp[9542]: sent /run/chaos-serve-x/undionly.kpxe to 10.99.0.11
"""
DAY = """\
dnsmasq-dhcp[9586]: 2708914050 DHCPDISCOVER(lab0) 52:54:00:99:00:11
dnsmasq-dhcp[9586]: 2708914050 tags: known, lab0
dnsmasq-dhcp[9586]: 2708914050 DHCPOFFER(lab0) 10.99.0.11 52:54:00:99:00:11
dnsmasq-dhcp[9586]: 2708914050 next server: 10.99.0.1
dnsmasq-dhcp[9586]: 2708914050 sent size:  6 option: 12 hostname  node01
"""


def test_a_night_answer_names_its_boot_file_and_a_day_answer_none():
    (night,) = dhcp_answers(NIGHT)
    assert night.mac == "52:54:00:99:00:11" and night.bootfile == "undionly.kpxe"
    assert "night" in night.tags
    day = last_answer(NIGHT + DAY, "52:54:00:99:00:11")
    assert day is not None and day.bootfile is None and "night" not in day.tags
    assert last_answer(NIGHT + DAY, "52:54:00:99:00:12") is None


def test_a_truncated_or_foreign_log_gives_what_it_holds():
    assert dhcp_answers("") == []
    assert dhcp_answers(NIGHT[:120] + "\n\x00garbage\n") == []
    assert (
        dhcp_answers("dnsmasq-dhcp[1]: 7 DHCPACK(br0) 10.0.0.5 52:54:00:00:00:01\n")[0].bootfile
        is None
    )
