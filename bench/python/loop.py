"""Elements/s of the Python loop `for x in Multiplexer(mux_id, comm=comm)` with an empty body
(the values summed, to check them), outcomes journaled as the C++ loop's are.
Run: mpirun -n R python3 loop.py N REPS ROOTDIR (with the mpmux package on PYTHONPATH).
Prints one line per repetition on rank 0: "python_s=<seconds> elements=<n>"."""
import sys
import time

from mpi4py import MPI

from mpmux import Multiplexer


def main():
    n, reps, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    comm = MPI.COMM_WORLD
    mux = Multiplexer.new(range(n), root, tag="bench") if comm.rank == 0 else None
    mux = comm.bcast(mux)
    for _ in range(reps):
        mux_id = comm.bcast(mux.create_read_session() if comm.rank == 0 else None)
        comm.Barrier()
        t0 = time.perf_counter()
        total = 0
        for x in Multiplexer(mux_id, comm=comm):
            total += x
        comm.Barrier()
        s = time.perf_counter() - t0
        total = comm.reduce(total)
        if comm.rank == 0:
            assert total == n * (n - 1) // 2, f"wrong sum {total}"
            print(f"python_s={s:.6f} elements={n}", flush=True)
    if comm.rank == 0:
        mux.destroy()


if __name__ == "__main__":
    main()
