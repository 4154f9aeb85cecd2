"""mpi4py.futures MPIPoolExecutor.map of an identity function, chunksize 1.
Run: mpirun -n R python3 -m mpi4py.futures mpi4py_futures.py N REPS
Prints one line per repetition: "mpi4py_s=<seconds> elements=<n>"."""
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def identity(x):
    return x


def main():
    n, reps = int(sys.argv[1]), int(sys.argv[2])
    with MPIPoolExecutor() as pool:
        list(pool.map(identity, range(100), chunksize=1))  # workers up before timing
        for _ in range(reps):
            t0 = time.perf_counter()
            total = sum(pool.map(identity, range(n), chunksize=1))
            s = time.perf_counter() - t0
            assert total == n * (n - 1) // 2
            print(f"mpi4py_s={s:.6f} elements={n}", flush=True)


if __name__ == "__main__":
    main()
