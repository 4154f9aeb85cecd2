#!/usr/bin/python3
"""multiprocessing.Pool: map of 10^6 small elements with chunksize 1000, and apply round trip."""
import multiprocessing
import sys
import time

N = 1_000_000
CHUNK = 1000  # bench_common.hpp kProcessChunk
MASK = (1 << 64) - 1


def tiny(x):
    return ((x * 2654435761) & MASK) ^ (x >> 7)


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with multiprocessing.Pool() as pool:
        data = range(N)
        for _ in range(reps):
            t0 = time.perf_counter()
            pool.map(tiny, data, chunksize=CHUNK)
            print(f"sample process_map_1e6 python_mp {time.perf_counter() - t0:.9f}", flush=True)
        n = 2000
        for _ in range(reps):
            t0 = time.perf_counter()
            for i in range(n):
                pool.apply(tiny, (i,))
            print(f"sample round_trip_per_task python_mp {(time.perf_counter() - t0) / n:.9f}", flush=True)


if __name__ == "__main__":
    main()
