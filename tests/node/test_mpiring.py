"""chaosnode.mpiring: what rank 0 prints (the ring itself runs in the smoke scenario
workload-mpi, under srun --mpi=pmix on three VMs)."""

from __future__ import annotations

from chaosnode import mpiring


def test_ring_line_names_the_marker_and_every_hop():
    assert (
        mpiring.ring_line("M1", ["node01", "node02", "node03", "node01"])
        == "ring M1: node01 -> node02 -> node03 -> node01 (3 ranks)"
    )


def test_usage_without_a_marker_is_an_error(capsys):
    assert mpiring.main([]) == 2
    assert "usage" in capsys.readouterr().err
