"""The chaos-build command line as an admin uses it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest
from chaostest import ROOT


def chaos_build(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_check_default_config():
    r = chaos_build("check")
    assert r.returncode == 0, r.stderr
    assert "3 nodes" in r.stdout


def test_invalid_input_exits_2_without_traceback():
    bad = ROOT / "tests" / "invalid" / "address_outside_subnet.yaml"
    r = chaos_build("check", "-c", str(bad))
    assert r.returncode == 2
    assert "nodes[1].address: 10.9.0.7 is outside network.subnet" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_is_explained():
    r = chaos_build("check", "-c", "/nonexistent/chaos.yaml")
    assert r.returncode == 2 and "file not found" in r.stderr


def test_pki_render_show_round_trip(workdir):
    assert chaos_build("pki", "init", "-c", "chaos.yaml", cwd=workdir).returncode == 0
    r = chaos_build("pki", "init", "-c", "chaos.yaml", cwd=workdir)
    assert "kept existing" in r.stdout
    # the CA is all a render needs: node keys are made on the nodes, certificates enrolled
    r = chaos_build("render", "-c", "chaos.yaml", "-o", "out/nodes", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert (workdir / "out/nodes/node03/etc/swanctl/x509ca/ca.pem").exists()
    assert not (workdir / "out/nodes/node03/etc/swanctl/x509/node.pem").exists()
    assert not list((workdir / "out/nodes").rglob("*.key"))
    assert chaos_build("pki", "issue", "--all", "-c", "chaos.yaml", cwd=workdir).returncode == 0
    r = chaos_build("pki", "list", "-c", "chaos.yaml", cwd=workdir)
    assert r.stdout.count("valid") == 3
    old_key = (workdir / "pki/nodes/node02.key").read_bytes()
    r = chaos_build("pki", "revoke", "node02", "-c", "chaos.yaml", cwd=workdir)
    assert r.returncode == 0 and "revoked" in r.stdout
    assert not (workdir / "pki/nodes/node02.key").exists()  # the key goes with its certificate
    # a render with the revoked node still in chaos.yaml says what to do, and succeeds
    r = chaos_build("render", "-c", "chaos.yaml", "-o", "out/nodes", cwd=workdir)
    assert r.returncode == 0 and "node node02 is revoked" in r.stderr
    assert "Remove it from chaos.yaml, or re-admit it" in r.stderr
    # re-admitting makes a new key, never a new certificate for the revoked one
    assert chaos_build("pki", "issue", "node02", "-c", "chaos.yaml", cwd=workdir).returncode == 0
    assert (workdir / "pki/nodes/node02.key").read_bytes() != old_key
    (workdir / "pki/nodes/node02.key").write_bytes(old_key)  # the revoked key, restored
    r = chaos_build("pki", "issue", "node02", "--force", "-c", "chaos.yaml", cwd=workdir)
    assert r.returncode == 1 and "is the key of a revoked certificate" in r.stderr
    assert "Traceback" not in r.stderr
    r = chaos_build("show", "node02", "-c", "chaos.yaml", cwd=workdir)
    assert "10.99.0.12/24" in r.stdout and "chaos.yaml:" in r.stdout


@pytest.mark.parametrize("args", [("show", "node99"), ("render", "--node", "node99")])
def test_unknown_node_is_named(args, workdir):
    r = chaos_build(*args, "-c", "chaos.yaml", cwd=workdir)
    assert r.returncode == 1 and "no node named 'node99'" in r.stderr


def test_debug_shows_traceback():
    bad = ROOT / "tests" / "invalid" / "bad_scope.yaml"
    r = chaos_build("--debug", "check", "-c", str(bad))
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_show_lists_every_declared_setting_with_its_origin(workdir):
    """Rows come from the model: a setting added to builder/model.py or to a feature's model
    section (builder/<feature>/model.py) appears by itself."""
    import dataclasses

    from builder.features import top_level
    from builder.model import Node

    r = chaos_build("show", "node02", "-c", "chaos.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    keys = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    expected = {f.name for f in dataclasses.fields(Node)}
    for key in top_level():
        name, kind = key.name, key.type
        if name in ("defaults", "nodes"):
            continue
        if not dataclasses.is_dataclass(kind):  # a top-level scalar such as workload
            expected.add(name)
            continue
        expected |= {
            f"{name}.{f.name}"
            for f in dataclasses.fields(kind)
            if not (name == "firewall" and f.name == "services")
        }
    assert len(expected) > 30
    assert expected <= keys, sorted(expected - keys)
    assert "security.scope" in keys and "cluster.name" in keys and "workload" in keys
    assert "schedule.time_zone" in keys and "login_from" in keys  # the night's, the head's


def test_build_says_where_to_submit_jobs(default_cluster):

    from builder.build import workload_line
    from builder.slurm.model import SlurmModel, Workload

    line = workload_line(default_cluster)
    assert line.startswith("workload: slurm: submit jobs on node01 (10.99.0.11, the head)")
    assert "--mpi=pmix" not in line
    mpi = default_cluster.with_section(SlurmModel(workload=Workload.SLURM_MPI))
    assert "srun --mpi=pmix" in workload_line(mpi)
    assert workload_line(default_cluster.with_section(SlurmModel(workload=Workload.NONE))) == ""


def test_render_without_a_ca_says_what_to_run(workdir):
    r = chaos_build("render", "-c", "chaos.yaml", cwd=workdir)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "internal error" not in r.stderr and "chaos-build pki init" in r.stderr
