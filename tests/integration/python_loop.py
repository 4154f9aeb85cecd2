"""Workers of test_python.py: a loop over a session, run in a thread, a multiprocessing process or
an MPI rank. Each element is {"x": X}; its result is 2 * X as text.

As a program: python3 python_loop.py MUX_ID OUT_DIR [--comm]
  iterates the session (collectively over MPI_COMM_WORLD with --comm, else as a plain
  participant) and writes the indices this process got to OUT_DIR/<pid>.json.
"""
import json
import os
import sys

from mpmux import Multiplexer


def work(mux, comm=None):
    """The indices of the elements this loop got; `mux` a mux id or a Multiplexer (pickled to
    another process, it is one there)."""
    if not isinstance(mux, Multiplexer):
        mux = Multiplexer(mux, comm=comm)
    got = []
    for e in mux.elements():
        e.set_result(str(2 * e.value["x"]))
        got.append(e.index)
    return got


def main():
    mux_id, out = sys.argv[1], sys.argv[2]
    comm = None
    if "--comm" in sys.argv[3:]:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    got = work(mux_id, comm)
    with open(os.path.join(out, f"{os.getpid()}.json"), "w") as f:
        json.dump({"rank": comm.rank if comm else 0, "indices": got}, f)


if __name__ == "__main__":
    main()
