"""mpmux for Python: hand the elements of a brute-force search to workers, each exactly once.

    from mpmux import Multiplexer
    mux = Multiplexer.new(({"alpha": a, "seed": s} for a in alphas for s in seeds), "/scratch/ana/mux")
    mux_id = mux.create_read_session()
    for params in Multiplexer(mux_id):   # in threads, processes, MPI ranks or batch jobs
        simulate(params)

A ctypes binding of libmpmux (the C ABI of include/mpmux/mpmux.h); standard library only, mpi4py
optional. docs/guide.md, "The Python API", says more.
"""
from ._library import ABI_VERSION, AbiMismatchError, MuxError, UsageError
from .multiplexer import Element, Multiplexer

__all__ = ["ABI_VERSION", "AbiMismatchError", "Element", "Multiplexer", "MuxError", "UsageError"]
