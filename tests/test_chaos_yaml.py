"""chaos.yaml parsing and validation: the default file, every invalid fixture, the reference."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest
from chaostest import ROOT

from builder import reference
from builder.config import load_cluster, load_cluster_text
from builder.errors import ConfigError
from builder.loader import MAX_FILE_BYTES
from builder.model import Role, Scope
from builder.security.model import SecurityModel
from builder.slurm.model import SlurmModel, Workload

INVALID = sorted((ROOT / "tests" / "invalid").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: '"
    return first.removeprefix("# expect: ")


def test_default_cluster_is_valid(default_cluster):
    assert [n.name for n in default_cluster.nodes] == ["node01", "node02", "node03"]
    assert default_cluster.network.subnet == ipaddress.IPv4Network("10.99.0.0/24")
    assert default_cluster.section(SecurityModel).security.scope is Scope.ALL
    assert default_cluster.nodes[0].roles == (Role.HEAD, Role.COMPUTE)
    assert all(n.roles == (Role.COMPUTE,) for n in default_cluster.nodes[1:])
    assert [h.name for h in default_cluster.heads] == ["node01"]
    assert default_cluster.section(SlurmModel).workload is Workload.SLURM
    assert [s.name for s in default_cluster.seeds] == ["node01"]


def test_there_are_enough_invalid_fixtures():
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_config_is_rejected_with_its_message(path):
    with pytest.raises(ConfigError) as err:
        load_cluster(path)
    text = str(err.value)
    assert expected_message(path) in text
    for line in text.splitlines():
        assert line.startswith(f"{path}:"), f"every problem names the file: {line}"


def test_alias_bomb_is_refused_before_it_expands():
    # every level multiplies by 9: 9**9 items if composed, refused at the first anchor
    start = time.monotonic()
    with pytest.raises(ConfigError, match="anchor &a is not allowed"):
        load_cluster(ROOT / "tests" / "invalid" / "alias_bomb.yaml")
    assert time.monotonic() - start < 5, "generous: it takes milliseconds"


def test_oversized_chaos_yaml_is_refused_before_parsing(tmp_path):
    big = tmp_path / "chaos.yaml"
    line = b"# a comment line that makes the file large, as a pasted log would\n"
    with big.open("wb") as f:
        f.write((ROOT / "chaos.yaml").read_bytes())
        f.write(line * (100 * 1024 * 1024 // len(line)))  # ~100 MB
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_cluster(big)
    assert time.monotonic() - start < 5, "generous: only the first MiB is read"
    assert str(err.value).startswith(f"{big}: ")
    assert "more than the 1 MiB a chaos-build YAML file may have" in str(err.value)
    with pytest.raises(ConfigError, match="more than the 1 MiB"):
        load_cluster_text("#" * (MAX_FILE_BYTES + 1))


def test_all_problems_are_reported_at_once():
    text = (ROOT / "tests" / "invalid" / "address_outside_subnet.yaml").read_text()
    text = text.replace('"52:54:00:99:00:12"', '"52:54:00:99:00:11"')
    with pytest.raises(ConfigError) as err:
        load_cluster_text(text)
    assert len(err.value.problems) == 2


def test_unquoted_mac_is_read_as_written():
    # YAML 1.1 reads 52:54:00:12:34:56 as a base-60 number; we must keep the text.
    text = (ROOT / "chaos.yaml").read_text().replace('"52:54:00:99:00:11"', "52:54:00:12:34:56")
    cluster = load_cluster_text(text)
    assert cluster.nodes[0].mac == "52:54:00:12:34:56"


def test_defaults_are_inherited_and_overridden():
    text = (
        (ROOT / "chaos.yaml")
        .read_text()
        .replace(
            "defaults:\n  roles: [compute]",
            "defaults:\n  roles: [compute]\n  services:\n    - {name: ssh, port: 22}",
        )
    )
    text = text.replace("    address: 10.99.0.13\n", "    address: 10.99.0.13\n    roles: [head]\n")
    text = text.replace("workload: slurm ", "workload: none  ")  # two heads: no slurmctld
    cluster = load_cluster_text(text)
    assert cluster.nodes[0].services[0].port == 22
    assert cluster.nodes[2].roles == (Role.HEAD,)
    assert cluster.nodes[1].roles == (Role.COMPUTE,)
    assert [h.name for h in cluster.heads] == ["node01", "node03"]


def test_without_a_marked_head_the_first_seed_is_the_head():
    text = (ROOT / "chaos.yaml").read_text().replace("    roles: [head, compute]", "")
    text = text.replace("seeds: [node01]", "seeds: [node02]")
    cluster = load_cluster_text(text)
    assert [h.name for h in cluster.heads] == ["node02"]


def test_model_is_frozen(default_cluster):
    with pytest.raises(AttributeError):
        default_cluster.nodes[0].name = "x"  # type: ignore[misc]


def test_reference_covers_every_setting():
    ref = reference.yaml_reference()
    for key in (
        "subnet:",
        "scope:",
        "esp_proposals:",
        "heartbeat_seconds:",
        "hardware:",
        "compression:",
        "services:",
        "key_type:",
    ):
        assert key in ref
    md = reference.markdown()
    assert "| `security.scope` | all \\| migration" in md or "`security.scope`" in md


def test_docs_reference_is_current():
    page = (ROOT / "docs" / "reference.md").read_text()
    assert reference.markdown() in page, (
        "docs/reference.md is stale: paste `chaos-build reference --markdown` into it"
    )
