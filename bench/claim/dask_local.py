"""dask.distributed LocalCluster: elements/s of an empty task, one task per element.
Run: python3 dask_local.py N REPS WORKERS
Two worker processes of one thread each (as many as the MPI contenders' ranks); Client.map of an
identity function over N elements (pure=False: every element its own task), gathered.
Prints one line per repetition: "dask_s=<seconds> elements=<n>"."""
import sys
import time
import warnings

from distributed import Client, LocalCluster


def identity(x):
    return x


def main():
    n, reps, workers = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    warnings.simplefilter("ignore")  # the dashboard's missing bokeh and similar notices
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as cluster, Client(cluster) as client:
        client.gather(client.map(identity, range(100), pure=False))  # workers up before timing
        for _ in range(reps):
            t0 = time.perf_counter()
            total = sum(client.gather(client.map(identity, range(n), pure=False)))
            s = time.perf_counter() - t0
            assert total == n * (n - 1) // 2
            print(f"dask_s={s:.6f} elements={n}", flush=True)


if __name__ == "__main__":
    main()
