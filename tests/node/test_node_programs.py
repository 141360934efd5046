"""The node-side programs (chaosnode) run here against temporary trees: no root, no VM."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from chaostest import node_settings

from chaosnode import agent, bootenroll, enroll, identity, paths, probe, selftest


def node_overlay(bundle: Path, name: str, mac: str) -> Path:
    root = bundle / name
    node_json = root / paths.in_root(paths.NODE_JSON)
    node_json.parent.mkdir(parents=True)
    node_json.write_text(node_settings(name=name, mac=mac).dumps("test"))
    (root / "etc" / "hostname").write_text(f"{name}\n")
    return root


def nics(sys_net: Path, **macs: str) -> Path:
    for nic, mac in {"lo": "00:00:00:00:00:00", **macs}.items():
        (sys_net / nic).mkdir(parents=True)
        (sys_net / nic / "address").write_text(mac + "\n")
    return sys_net


def test_identity_applies_the_overlay_of_a_matching_mac_and_drops_the_rest(tmp_path, capsys):
    root = tmp_path / "root"
    bundle = root / paths.in_root(paths.NODE_BUNDLE)
    node_overlay(bundle, "node01", "52:54:00:00:00:01")
    node_overlay(bundle, "node02", "52:54:00:00:00:02")
    sys_net = nics(tmp_path / "net", ens3="52:54:00:00:00:02")
    assert identity.main(root, sys_net, wait=0) == 0
    assert (root / "etc/hostname").read_text() == "node02\n"
    assert json.loads((root / paths.in_root(paths.NODE_JSON)).read_text())["name"] == "node02"
    assert not bundle.exists(), "the other nodes' settings must not stay in RAM"
    assert "takes node node02's settings" in capsys.readouterr().out


def test_identity_of_an_unknown_mac_applies_nothing(tmp_path, capsys):
    root = tmp_path / "root"
    bundle = root / paths.in_root(paths.NODE_BUNDLE)
    node_overlay(bundle, "node01", "52:54:00:00:00:01")
    sys_net = nics(tmp_path / "net", ens3="52:54:00:99:99:99")
    assert identity.main(root, sys_net, wait=0) == 0
    assert not (root / paths.in_root(paths.NODE_JSON)).exists()
    assert not bundle.exists()
    out = capsys.readouterr().out
    assert "52:54:00:99:99:99" in out and "not a node of this cluster image" in out


def test_identity_ignores_loopback_mac(tmp_path):
    assert identity.macs(nics(tmp_path / "net", eth0="AA:BB:CC:DD:EE:FF")) == ["aa:bb:cc:dd:ee:ff"]


UP = {"addr": "10.0.0.1", "nft": "ok", "enroll": "ok", "charon": "ok", "tyd": "ok", "disks": "none"}


@pytest.mark.parametrize(
    ("fields", "ready"),
    [
        (UP, True),
        ({**UP, "charon": "failed"}, False),
        ({**UP, "addr": "none"}, False),
        ({**UP, "disks": "sda"}, False),
        ({**UP, "enroll": "waiting", "charon": "waiting", "tyd": "waiting"}, False),
    ],
)
def test_selftest_verdict_is_ready_only_when_everything_is(fields, ready):
    line = selftest.verdict({"name": "node01"}, {"node": "node01", **fields})
    assert line.startswith("CHAOS-READY " if ready else "CHAOS-FAILED ")
    assert f"disks={fields['disks']}" in line


def test_selftest_on_the_always_on_head_allows_its_disks(tmp_path):
    fields = {"node": "node01", **UP, "disks": "vda,vdb"}
    assert selftest.verdict({"name": "node01"}, fields, head=True).startswith("CHAOS-READY ")
    assert selftest.verdict({"name": "node01"}, fields).startswith("CHAOS-FAILED ")
    night = tmp_path / "night.json"
    assert not selftest.always_on(night), "no night.json: a lab PC"
    doc = {"node": "node01", "windows": [], "time_zone": "UTC", "whole_days": [], "holidays": []}
    doc |= {"stop_new_work_before": 1, "morning": "reboot", "time_source": "", "always_on": True}
    night.write_text(json.dumps(doc))
    assert selftest.always_on(night)
    night.write_text("{")
    assert not selftest.always_on(night)


def test_selftest_without_node_settings_is_never_ready():
    fields = {"node": "unknown", **UP, "addr": "none"}
    assert selftest.verdict({}, fields).startswith("CHAOS-FAILED ")


def test_agent_runs_argv_without_a_shell():
    reply = json.loads(agent.answer(json.dumps({"id": 7, "argv": ["echo", "$HOME;x"]}).encode()))
    assert reply == {"id": 7, "rc": 0, "out": "$HOME;x\n", "err": ""}


@pytest.mark.parametrize("line", [b"not json", b'{"id": 1}', b'{"argv": 5}', b"[]"])
def test_agent_answers_a_malformed_request_with_an_error(line):
    reply = json.loads(agent.answer(line))
    assert reply["rc"] == -1 and reply["err"].startswith("bad request")


def test_agent_reports_a_missing_program_and_a_timeout():
    missing = json.loads(agent.answer(b'{"id": 1, "argv": ["/nonexistent/prog"]}'))
    assert missing["rc"] == -2
    slow = json.loads(agent.answer(b'{"id": 2, "argv": ["sleep", "5"], "timeout": 0.2}'))
    assert slow["rc"] == -9 and slow["err"] == "timed out"


def test_agent_caps_its_output():
    big = agent.MAX_OUTPUT * 2
    reply = json.loads(
        agent.answer(
            json.dumps({"id": 3, "argv": [sys.executable, "-c", f"print('x' * {big})"]}).encode()
        )
    )
    assert len(reply["out"]) == agent.MAX_OUTPUT


def test_probe_sends_tcp_to_a_listener_on_loopback(capsys):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        got: list[bytes] = []

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                got.append(conn.recv(100))

        t = threading.Thread(target=accept)
        t.start()
        assert probe.main(["send", "tcp", "127.0.0.1", str(server.getsockname()[1]), "marker"]) == 0
        t.join(5)
    assert got == [b"marker"]
    assert capsys.readouterr().out == "sent\n"


def test_probe_send_gives_up_after_its_seconds_on_an_unanswered_connect(monkeypatch, capsys):
    """A listener whose accept queue is full drops the next SYN, as a member's firewall does a
    rogue's: send waits the seconds it was given (the rogue checks give 4), never says sent."""
    waits: list[float] = []
    real = socket.create_connection

    def recorded(address: tuple[str, int], timeout: float) -> socket.socket:
        waits.append(timeout)
        return real(address, timeout=timeout)

    monkeypatch.setattr(probe.socket, "create_connection", recorded)
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())  # the queue's one place, never accepted
        port = str(server.getsockname()[1])
        with pytest.raises(TimeoutError):
            probe.main(["send", "tcp", "127.0.0.1", port, "marker", "0.5"])
    assert waits == [0.5]
    assert "sent" not in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["send", "icmp", "1.2.3.4", "1", "x"], ["bogus"]])
def test_probe_refuses_bad_arguments_with_usage(argv, capsys):
    assert probe.main(argv) == 2
    assert "listen tcp|udp" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("active", "queued", "done"),
    [
        ("active", False, True),
        ("failed", False, True),
        ("inactive", False, True),
        ("activating", False, False),
        ("inactive", True, False),
    ],
)
def test_selftest_waits_for_units_still_starting_or_queued_behind_enrollment(active, queued, done):
    assert selftest.settled(active, queued) is done


def test_bootenroll_passes_the_rendered_settings_to_the_client():
    node = node_settings(
        name="node02",
        address="10.99.0.12",
        key_type="ecdsa-p256",
        enroll_url="https://10.99.0.1:8443",
    )
    argv = bootenroll.enroll_argv(node)
    assert argv[argv.index("--url") + 1] == "https://10.99.0.1:8443"
    assert argv[argv.index("--node") + 1] == "node02"
    assert argv[argv.index("--key-type") + 1] == "ecdsa-p256"
    assert argv[argv.index("--key-out") + 1] == paths.NODE_KEY_PATH
    assert enroll.parser().parse_args(argv).address == "10.99.0.12"
    assert enroll.parser().parse_args(argv).attestation == "tpm"
    no_tpm = bootenroll.enroll_argv(dataclasses.replace(node, attestation="approval"))
    assert enroll.parser().parse_args(no_tpm).attestation == "approval"


def test_bootenroll_without_an_enrollment_service_says_so(tmp_path, capsys):
    node_json = tmp_path / "node.json"
    node_json.write_text(node_settings(enroll_url="").dumps("test"))
    assert bootenroll.main(node_json) == 1
    assert "serve.address is null" in capsys.readouterr().out


NODE_PYTHON = "/usr/bin/python3"  # Debian's, with the image's python3-* packages


def test_node_programs_import_under_the_node_python_without_the_builder():
    """The image runs every chaosnode module with Debian's python3 -I (cryptography 38,
    tpm2-pytss 1.2.0): no venv, no builder, no jinja2 or yaml."""
    root = Path(__file__).resolve().parents[2]
    python = NODE_PYTHON if Path(NODE_PYTHON).exists() else sys.executable
    modules = sorted(p.stem for p in (root / "chaosnode").glob("*.py") if p.stem != "__init__")
    assert {"identity", "enroll", "tpm", "crl", "ipsec", "signature"} <= set(modules)
    for module in modules:
        r = subprocess.run(
            [
                python,
                "-I",
                "-c",
                f"import sys; sys.path.insert(0, {str(root)!r}); "
                f"import chaosnode.{module}; "
                "assert not any(m.split('.')[0] in ('builder', 'jinja2', 'yaml') "
                "for m in sys.modules), sorted(sys.modules)",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"chaosnode.{module}: {r.stderr}"
