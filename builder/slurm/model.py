"""The workload's model section: chaos.yaml's `workload:`, declared once here and named by the
slurm feature (builder/features/slurm.py). Its checks: builder/slurm/checks.py."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..settings import setting


class Workload(enum.Enum):
    SLURM = "slurm"
    SLURM_MPI = "slurm+mpi"
    NONE = "none"

    @property
    def slurm(self) -> bool:
        return self is not Workload.NONE

    @property
    def mpi(self) -> bool:
        return self is Workload.SLURM_MPI


@dataclass(frozen=True, kw_only=True)
class SlurmModel:
    """The workload's top-level chaos.yaml key."""

    workload: Workload = setting(
        Workload.SLURM,
        "what runs jobs: slurm (slurmctld on the head, every compute node a "
        "dynamic slurmd; munge authenticates it), slurm+mpi (adds Open MPI, launched with "
        "`srun --mpi=pmix`; ~20 MB more initrd) or none",
    )
