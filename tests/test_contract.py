"""The builder/node contract: every path a systemd unit of overlays/ names is one that
chaosnode.contract.paths declares, every node program a unit runs exists, and the records
chaos-build renders (node.json, slurm.json) read back on the node as the same record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chaostest import node_settings

from builder.features import node_context
from builder.render import environment, render_templates, template_names
from builder.resources import data_dir
from chaosnode.contract import paths
from chaosnode.contract.node import NodeSettings
from chaosnode.contract.record import RecordError
from chaosnode.contract.slurm import SlurmSettings

OVERLAYS = data_dir("overlays")
UNIT_DIRS = sorted(OVERLAYS.glob("*/etc/systemd"))  # every feature's units
# an absolute path in a unit line: after =, !, @, - (EnvironmentFile=-), a space or a quote
UNIT_PATH = re.compile(r"(?:^|[\s=!@\"'-])(/[\w./@:%-]+)", re.MULTILINE)
PROGRAM = re.compile(r"\s-m\s+([\w.]+)")


def declared() -> set[str]:
    values = [v for k, v in vars(paths).items() if k.isupper()]
    flat = [x for v in values for x in (v.values() if isinstance(v, dict) else [v])]
    return {v for v in flat if isinstance(v, str) and v.startswith("/")}


def unit_files() -> list[Path]:
    return sorted(p for d in UNIT_DIRS for p in d.rglob("*") if p.is_file() and not p.is_symlink())


def named_paths(unit: Path) -> set[str]:
    lines = [ln for ln in unit.read_text().splitlines() if not ln.lstrip().startswith("#")]
    return set(UNIT_PATH.findall("\n".join(lines)))


def test_the_units_are_found():
    assert len(unit_files()) >= 10


@pytest.mark.parametrize("unit", unit_files(), ids=lambda p: p.name)
def test_every_path_a_unit_names_is_declared_in_the_contract(unit):
    assert named_paths(unit) - declared() == set()


@pytest.mark.parametrize("unit", unit_files(), ids=lambda p: p.name)
def test_every_program_a_unit_runs_is_a_module_of_the_node_packages(unit):
    root = Path(__file__).resolve().parents[1]
    for module in PROGRAM.findall(unit.read_text()):
        parts = module.split(".")
        assert (
            root.joinpath(*parts).with_suffix(".py").is_file()
            or (root.joinpath(*parts) / "__main__.py").is_file()
        ), module


def test_the_agent_unit_waits_for_the_declared_port():
    escaped = paths.AGENT_PORT.lstrip("/").replace("-", "\\x2d").replace("/", "-")
    assert (OVERLAYS / "common/etc/systemd/system" / f"{escaped}.device.wants").is_dir()


def test_rendered_records_read_back_on_the_node(default_cluster):
    env = environment()
    names = [
        n
        for n in template_names()
        if n in ("common/etc/chaos/node.json.j2", "slurm/etc/chaos/slurm.json.j2")
    ]
    for node in default_cluster.nodes:
        tree = render_templates(node_context(default_cluster, node), env, names)
        settings = NodeSettings.loads(tree[paths.in_root(paths.NODE_JSON)].data)
        assert (settings.name, settings.mac) == (node.name, node.mac)
        if paths.in_root(paths.SLURM_JSON) in tree:
            slurm = SlurmSettings.loads(tree[paths.in_root(paths.SLURM_JSON)].data)
            assert slurm.node == node.name and slurm.munge_key == paths.MUNGE_KEY


@pytest.mark.parametrize(
    "text, why",
    [
        ("[]", "not a JSON object"),
        ('{"name": "node01"}', "missing"),
        (node_settings().dumps("x").replace('"scope"', '"scoop"'), "unknown ['scoop']"),
        (node_settings().dumps("x").replace('"10.99.0.11"', "7"), "address: 7 is not str"),
    ],
)
def test_a_record_that_is_not_one_is_refused(text, why):
    with pytest.raises(RecordError, match=re.escape(why)):
        NodeSettings.loads(text)


def test_flags_stay_flags():
    s = SlurmSettings(
        "slurm",
        "node01",
        "node01",
        "10.99.0.11",
        True,
        False,
        paths.TYD_EXPORTS["json"],
        paths.MUNGE_KEY,
    )
    assert SlurmSettings.loads(s.dumps("x")) == s
    with pytest.raises(RecordError, match="slurmd: 0 is not bool"):
        SlurmSettings.loads(s.dumps("x").replace('"slurmd": false', '"slurmd": 0'))
