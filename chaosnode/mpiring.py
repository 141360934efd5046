"""An MPI ring for `workload: slurm+mpi`: rank 0 sends a token carrying a marker to rank 1,
each rank passes it on, and it comes back to rank 0, which prints the path it took. Launched
by Slurm through PMIx (no mpirun, no ssh):

    srun -N3 --mpi=pmix python3 -I -m chaosnode.mpiring MARKER

Runs under Debian's python3 with python3-mpi4py (Open MPI), which only the slurm+mpi image has.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

TAG = 7


def ring_line(marker: str, hops: Sequence[str]) -> str:
    """What rank 0 prints: the marker and every host the token passed, in order."""
    return f"ring {marker}: {' -> '.join(hops)} ({len(hops) - 1} ranks)"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python3 -m chaosnode.mpiring MARKER", file=sys.stderr)
        return 2
    from mpi4py import MPI  # noqa: PLC0415 - only the slurm+mpi image has it

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    host = socket.gethostname()
    if size < 2:
        print(f"a ring needs at least 2 ranks, got {size}", file=sys.stderr)
        return 2
    if rank == 0:
        comm.send({"marker": args[0], "hops": [host]}, dest=1, tag=TAG)
        token = comm.recv(source=size - 1, tag=TAG)
        token["hops"].append(host)
        print(ring_line(token["marker"], token["hops"]), flush=True)
    else:
        token = comm.recv(source=rank - 1, tag=TAG)
        token["hops"].append(host)
        comm.send(token, dest=(rank + 1) % size, tag=TAG)
    return 0


if __name__ == "__main__":
    sys.exit(main())
