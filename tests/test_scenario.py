"""Smoke scenario files are validated like chaos.yaml (file:line: field: what and how to fix),
and checked against the cluster file they run with before anything is built."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaostest import ROOT

from builder.config import load_cluster
from builder.errors import ConfigError
from builder.smoke.scenario import ci_runs, fit, load_scenario, spare_node

GOOD = """\
description: two members
boot: [node01, node02]
checks:
  - {title: "map", node: members, run: [python3, -m, tyd, status], pattern: "node01"}
"""


def scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s" / "scenario.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


SHIPPED = sorted(p.parent.name for p in (ROOT / "tests/scenarios").glob("*/scenario.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load_and_fit_their_cluster(name):
    s = load_scenario(ROOT / "tests/scenarios" / name / "scenario.yaml")
    fit(s, load_cluster(s.config)[0], s.config)
    assert s.description and (s.checks or s.remove)
    assert len(SHIPPED) >= 6


def test_default_lab_runs_the_focused_scenarios_in_one_boot():
    default = load_scenario(ROOT / "tests/scenarios/default/scenario.yaml")
    parts = [
        load_scenario(ROOT / "tests/scenarios" / n / "scenario.yaml")
        for n in ("mesh", "rogue-tpm", "power-off", "workload")
    ]
    assert default.includes == ("mesh", "rogue-tpm", "power-off", "workload")
    assert default.checks == tuple(c for p in parts for c in p.checks)
    assert default.wire == parts[0].wire + parts[3].wire and default.rogue == parts[1].rogue
    assert default.remove == "node03" and default.after == parts[3].after


def test_include_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "scenario.yaml").write_text(
        "description: a\nboot: [node01]\ninclude: [../b/scenario.yaml, ../a/scenario.yaml,"
        " ../none/scenario.yaml]\n"
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "scenario.yaml").write_text("description: b\nboot: [node01, node02]\n")
    with pytest.raises(ConfigError) as exc:
        load_scenario(tmp_path / "a" / "scenario.yaml")
    text = str(exc.value)
    assert "a/scenario.yaml:3: include[0]: ../b/scenario.yaml boots node02" in text
    assert "include[1]: ../a/scenario.yaml includes itself" in text
    assert "include[2]: ../none/scenario.yaml: no such scenario file" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("description: two members\n", ""), ":1: missing 'description'"),
        (GOOD.replace('title: "map", ', ""), None),  # title defaults to the pattern
        (
            GOOD.replace('pattern: "node01"', 'pattern: "node01("'),
            ":4: checks[0].pattern: not a regular expression",
        ),
        (GOOD.replace(', pattern: "node01"', ""), ":4: checks[0]: missing 'pattern'"),
        (
            GOOD.replace("node: members", "node: node09"),
            ":4: checks[0].node: 'node09' is not booted by this scenario",
        ),
        (GOOD.replace('"node01"}', '"{node07}"}'), ":4: checks[0]: {node07} is neither a booted"),
        (GOOD.replace('"node01"}', '"{rogue}"}'), ":4: checks[0]: {rogue} used, but the scenario"),
        (
            GOOD
            + "wire:\n  - {title: w, from: node01, to: node02, proto: icmp, port: 1, clear: no}\n",
            ":6: wire[0].proto: 'icmp': use tcp or udp",
        ),
        (
            GOOD
            + "wire:\n  - {title: w, from: node01, to: node03, proto: udp, port: 1, clear: no}\n",
            ":6: wire[0].to: 'node03' is not booted",
        ),
        (GOOD + "remove: {node: node03}\n", ":5: remove.node: 'node03' is not booted"),
        (GOOD + "rouge: {impersonates: node04}\n", ":5: rouge: unknown key"),
        (GOOD + "night: {ends_after: 30}\n", ":5: night.ends_after: 30 is outside 120..3600"),
        (GOOD + "night: {end: 300}\n", ":5: night.end: unknown key"),
        (GOOD + "secure_boot: {tampered: node03}\n", ":5: secure_boot: missing 'secure_boot_off'"),
        (
            GOOD + "secure_boot: {tampered: node03, disabled: node04}\n",
            ":5: secure_boot.disabled: unknown",
        ),
        (GOOD + "firmware: uefi\n", ":5: firmware: 'uefi': one of bios, secure-boot"),
        (GOOD + "rogue_dhcp: {}\n", ":5: rogue_dhcp: missing 'victim'"),
        (GOOD + "rogue_dhcp: {victim: node03, via: tftp}\n", ":5: rogue_dhcp.via: unknown"),
        (
            GOOD + "firmware: bios\nrogue_dhcp: {victim: node03}\n",
            ":5: firmware: 'bios': one of bios, secure-boot (a rogue_dhcp: lab is secure-boot)",
        ),
        (
            GOOD + "firmware: bios\nsecure_boot: {tampered: node03, secure_boot_off: node04}\n",
            ":5: firmware: 'bios': one of bios, secure-boot (a secure_boot: lab is secure-boot)",
        ),
        (
            GOOD
            + "wire:\n  - {title: w, from: node01, to: node02, run: [srun, echo, x], clear: no}\n",
            ":6: wire[0].run: the command must carry {marker}",
        ),
        (
            GOOD + "after:\n  - {node: node01, run: [sinfo], pattern: node02}\n",
            ":5: after: checks after a power-off need `remove: {node: ...}`",
        ),
        (
            GOOD + "remove: {node: node02}\nafter:\n  - {node: node09, run: [sinfo], pattern: x}\n",
            ":7: after[0].node: 'node09' is not booted",
        ),
        (GOOD + "ci: {boot: usb}\n", ":5: ci.boot: 'usb' is not one of pxe, iso"),
        (GOOD + "ci: {bot: pxe}\n", ":5: ci.bot: unknown key"),
        (GOOD + "ci: {}\n", ":5: ci: missing 'boot'"),
        ("- a list\n", ":1: expected a mapping"),
        (GOOD.replace("boot: [node01, node02]", "boot: [node01, node02"), ":3: not valid YAML"),
    ],
)
def test_invalid_scenario_is_refused_with_file_line_and_field(tmp_path, text, message):
    path = scenario(tmp_path, text)
    if message is None:
        assert load_scenario(path).checks[0].title == "node01"
        return
    with pytest.raises(ConfigError) as exc:
        load_scenario(path)
    assert f"{path}{message}" in str(exc.value)


def test_the_lab_firmware_is_read_and_a_secure_boot_lab_is_secure_boot(tmp_path):
    assert load_scenario(scenario(tmp_path, GOOD)).firmware == "bios"
    assert load_scenario(scenario(tmp_path, GOOD + "firmware: secure-boot\n")).firmware == (
        "secure-boot"
    )
    negatives = GOOD + "secure_boot: {tampered: node03, secure_boot_off: node04}\n"
    assert load_scenario(scenario(tmp_path, negatives)).firmware == "secure-boot"
    assert load_scenario(ROOT / "tests/scenarios/iso-secureboot/scenario.yaml").firmware == (
        "secure-boot"
    )
    rogue_dhcp = load_scenario(scenario(tmp_path, GOOD + "rogue_dhcp: {victim: node03}\n"))
    assert rogue_dhcp.firmware == "secure-boot" and rogue_dhcp.rogue_dhcp.victim == "node03"


def test_wire_command_and_checks_after_the_power_off_are_read(tmp_path):
    text = GOOD + (
        "wire:\n  - {title: w, from: node01, to: node02, run: [srun, echo, "
        '"{marker}"], clear: no}\nremove: {node: node02}\nafter:\n'
        "  - {node: node01, run: [sinfo], pattern: node02, expect: no}\n"
    )
    s = load_scenario(scenario(tmp_path, text))
    assert s.wire[0].run == ("srun", "echo", "{marker}") and s.wire[0].port == 0
    assert [(c.on, c.run, c.expect) for c in s.after] == [("node01", ("sinfo",), False)]


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.replace("node: members", "node: node09").replace('"node01"}', '"node01("}')
    with pytest.raises(ConfigError) as exc:
        load_scenario(scenario(tmp_path, text))
    assert len(exc.value.problems) == 2


def test_default_scenario_fits_the_admins_three_node_cluster_with_a_stranger_rogue():
    """`chaos-build smoke -c chaos.yaml` used to die with KeyError: 'node04'."""
    s = load_scenario(ROOT / "tests/scenarios/default/scenario.yaml")
    cluster = load_cluster(ROOT / "chaos.yaml")[0]
    fit(s, cluster, ROOT / "chaos.yaml")
    assert spare_node(s, cluster) == ""
    test_cluster = load_cluster(s.config)[0]
    assert spare_node(s, test_cluster) == "node04"


def test_scenario_that_boots_a_node_the_cluster_lacks_is_refused_before_any_build(tmp_path):
    text = GOOD.replace("[node01, node02]", "[node01, node02, node07]")
    s = load_scenario(scenario(tmp_path, text))
    with pytest.raises(ConfigError, match=r"scenario.yaml:2: boot\[2\]: node07 is not a node of"):
        fit(s, load_cluster(ROOT / "chaos.yaml")[0], ROOT / "chaos.yaml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("rogue: {impersonates: node09}", "rogue.impersonates: node09 is not a node of"),
        ("rogue: {impersonates: node02}", "rogue.impersonates: node02 is booted by this scenario"),
        # the measured-boot negatives of the secureboot lab are spare machines too
        (
            "secure_boot: {tampered: node09, secure_boot_off: node03}",
            "secure_boot.tampered: node09 must be",
        ),
        (
            "secure_boot: {tampered: node03, secure_boot_off: node02}",
            "secure_boot.secure_boot_off: node02 must",
        ),
        # the rogue DHCP server's victim is a registered machine; a booted one is watched
        # by the members booted before it (so it is not the first) and is no head
        ("rogue_dhcp: {victim: node01}", "rogue_dhcp.victim: node01 is booted first or is a"),
        ("rogue_dhcp: {victim: node09}", "rogue_dhcp.victim: node09 must be a node of"),
    ],
)
def test_rogues_and_negatives_must_be_unbooted_nodes_of_the_cluster(tmp_path, extra, message):
    s = load_scenario(scenario(tmp_path, GOOD + extra + "\n"))
    with pytest.raises(ConfigError, match=message):
        fit(s, load_cluster(ROOT / "chaos.yaml")[0], ROOT / "chaos.yaml")


def test_a_rogue_dhcp_victim_is_a_spare_machine_or_a_member_booted_after_the_first(tmp_path):
    cluster = load_cluster(ROOT / "chaos.yaml")[0]
    for victim in ("node02", "node03"):  # node02 is booted second, node03 is never booted
        s = load_scenario(scenario(tmp_path, GOOD + f"rogue_dhcp: {{victim: {victim}}}\n"))
        fit(s, cluster, ROOT / "chaos.yaml")
    default = load_scenario(ROOT / "tests/scenarios/default/scenario.yaml")
    assert default.rogue_dhcp is not None and default.rogue_dhcp.victim == default.boot[-1]
    fit(default, cluster, ROOT / "chaos.yaml")  # the README's lab, on the shipped cluster


def test_scenario_aliases_and_oversized_files_are_refused(tmp_path):
    path = scenario(tmp_path, GOOD + "wire: &w []\nremove: *w\n")
    with pytest.raises(ConfigError, match=r"scenario.yaml:5: wire: YAML anchor &w is not"):
        load_scenario(path)
    path.write_text(GOOD + "#" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="scenario.yaml: .* bytes is more than the 1 MiB"):
        load_scenario(path)


def test_the_night_lab_sets_its_schedule_relative_to_now(default_cluster):
    import datetime as dt  # noqa: PLC0415

    from builder.night import night_of  # noqa: PLC0415
    from builder.night.model import NightModel  # noqa: PLC0415
    from builder.smoke.runner import night_cluster, night_end  # noqa: PLC0415

    before = dt.datetime.now(dt.UTC)
    lab = night_cluster(default_cluster, 300)
    night = night_of(lab)
    assert night is not None and night.inside(before), "the lab boots inside the night"
    end = night_end(lab)
    assert dt.timedelta(seconds=300) <= end - before <= dt.timedelta(seconds=420)
    assert end.second == 0 and lab.section(NightModel).schedule.morning.value == "reboot"
    assert load_scenario(ROOT / "tests/scenarios/night/scenario.yaml").night_ends_after == 600


def test_ci_runs_come_from_the_scenario_folders():
    """CI's smoke runs (tests/smoke/test_smoke.py RUNS) are the folders whose scenario says
    `ci: {boot: ...}`; each names a shipped folder; today's three (the iso lab also runs
    workload-mpi's checks, day-and-night the night lab's; the README test's default lab
    runs rogue-dhcp's attack on node03's first boot)."""
    runs = ci_runs(ROOT / "tests/scenarios")
    assert runs == (("day-and-night", "pxe"), ("iso", "iso"), ("migration", "pxe"))
    for name, _ in runs:
        assert name in SHIPPED
    for name in SHIPPED:  # every folder parses (ci_runs loaded each), and only these run in CI
        ci = load_scenario(ROOT / "tests/scenarios" / name / "scenario.yaml").ci_boot
        assert (ci is not None) == (name in dict(runs))


def test_a_broken_scenario_folder_breaks_the_ci_list_before_any_lab(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "scenario.yaml").write_text(GOOD + "ci: {boot: iso}\n")
    (tmp_path / "quiet").mkdir()
    (tmp_path / "quiet" / "scenario.yaml").write_text(GOOD)
    assert ci_runs(tmp_path) == (("good", "iso"),)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "scenario.yaml").write_text(GOOD + "ci: {boot: usb}\n")
    with pytest.raises(ConfigError, match=r"bad/scenario.yaml:5: ci.boot: 'usb'"):
        ci_runs(tmp_path)


DAY_AND_NIGHT = ROOT / "tests/scenarios/day-and-night"


def day_and_night(tmp_path: Path, old: str, new: str) -> Path:
    """The shipped day-and-night scenario with one edit, next to its cluster file."""
    folder = tmp_path / "dn"
    folder.mkdir(exist_ok=True)
    (folder / "chaos.yaml").write_text((DAY_AND_NIGHT / "chaos.yaml").read_text())
    text = (DAY_AND_NIGHT / "scenario.yaml").read_text()
    assert old in text
    (folder / "scenario.yaml").write_text(text.replace(old, new))
    return folder / "scenario.yaml"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("minutes: 8}\n    - {starts_after: 1020", "minutes: 1}\n    - {starts_after: 1020",
         r"day_and_night.nights\[0\].minutes: 1 is outside 3..60 minutes"),
        ("starts_after: 1020", "starts_after: 800",
         r"day_and_night.nights\[1\].starts_after: the second night starts at least two"),
        ("    - {starts_after: 1020, minutes: 10}\n", "",
         "day_and_night.nights: give two nights"),
        ("  keyless: bob\n", "", "day_and_night: missing 'keyless'"),
        ("  array: 20\n", "  array: 20\n  cpus: 4\n", "day_and_night.cpus: unknown key"),
    ],
)  # fmt: skip
def test_day_and_night_errors_name_the_file_and_line(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=r"scenario.yaml:\d+: " + message):
        load_scenario(day_and_night(tmp_path, old, new))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("head: node01", "head: node02", "head: node02 is not the always-on head"),
        ("user: alice", "user: carol", "user: carol is not a user"),
        ("keyless: bob", "keyless: alice", "keyless: alice must be a user of .* without ssh_keys"),
        ("campus: 192.0.2.10", "campus: 192.0.2.130", "campus: 192.0.2.130 must be inside"),
        ("outsider: 192.0.2.200", "outsider: 192.0.2.20", "outsider: 192.0.2.20 must be outside"),
        ("campus: 192.0.2.10", "campus: 10.99.0.50", "campus: 10.99.0.50 is on the lab segment"),
        ("outsider: 192.0.2.200", "outsider: campus", "outsider: 'campus' is not an IPv4"),
    ],
)
def test_day_and_night_must_fit_its_cluster(tmp_path, old, new, message):
    path = day_and_night(tmp_path, old, new)
    s = load_scenario(path)
    with pytest.raises(ConfigError, match=r"scenario.yaml:\d+: day_and_night\." + message):
        fit(s, load_cluster(s.config)[0], s.config)


@pytest.mark.parametrize(
    ("now", "first"),
    [
        ("10:40:00.000000", "10:45"),  # on the minute: exactly starts_after
        ("10:40:00.365867", "10:46"),  # stop 30's CI: 10:45 would have been 299.6 s away
        ("10:40:59.999999", "10:46"),
    ],
)
def test_a_night_starts_at_the_first_whole_minute_at_least_starts_after_from_now(now, first):
    """The lab's build and the head's boot fit in starts_after: a night never starts sooner."""
    import datetime as dt  # noqa: PLC0415

    from builder.smoke.dayandnight import night_windows  # noqa: PLC0415

    dn = load_scenario(DAY_AND_NIGHT / "scenario.yaml").day_and_night
    assert dn is not None
    at = dt.datetime.fromisoformat(f"2026-12-03T{now}+00:00")
    (start, end), (second, _) = night_windows(dn, at)
    assert f"{start:%H:%M}" == first and start.second == start.microsecond == 0
    assert dt.timedelta(seconds=300) <= start - at < dt.timedelta(seconds=360)
    assert end - start == dt.timedelta(minutes=8)
    assert dt.timedelta(seconds=1020) <= second - at < dt.timedelta(seconds=1080)


def test_day_and_night_sets_two_nights_relative_to_now_and_adds_the_labs_key(tmp_path):
    import datetime as dt  # noqa: PLC0415

    from builder.head.model import HeadModel  # noqa: PLC0415
    from builder.night import night_of  # noqa: PLC0415
    from builder.smoke.dayandnight import edges, nights_cluster, with_user_key  # noqa: PLC0415

    s = load_scenario(DAY_AND_NIGHT / "scenario.yaml")
    assert s.day_and_night is not None
    cluster = load_cluster(s.config)[0]
    before = dt.datetime.now(dt.UTC)
    lab = nights_cluster(cluster, s.day_and_night)
    (first, first_end), (second, second_end) = edges(lab)
    one, two = s.day_and_night.nights
    assert (one.starts_after, one.minutes, two.starts_after, two.minutes) == (300, 8, 1020, 10)
    after = dt.timedelta(seconds=one.starts_after)
    assert after <= first - before <= after + dt.timedelta(seconds=60)
    assert first_end - first == dt.timedelta(minutes=one.minutes)
    assert second_end - second == dt.timedelta(minutes=two.minutes)
    night = night_of(lab)
    assert night is not None and not night.inside(before), "the lab starts by day"
    assert night.inside(first) and not night.inside(first_end) and night.inside(second)
    keyed = with_user_key(cluster, s.day_and_night, tmp_path)
    alice, bob = keyed.section(HeadModel).users
    assert alice.ssh_keys[0].startswith("ssh-ed25519 ") and bob.ssh_keys == ()
    assert (tmp_path / "campus" / "alice_ed25519").exists()
