"""losses.py, a Snakemake script: results.h5 of the sweep as a CSV table, one row per element, lowest
loss first. Each element's result is what its task printed on stdout, the loss."""
import csv

import h5py

with h5py.File(snakemake.input[0], "r") as f:
    results = f["/results"][:]

rows = []
for r in results:
    if r["status"] != b"done":
        raise SystemExit(f"losses.py: element {r['index']} is {r['status'].decode()}, not done")
    rows.append((float(r["result"]), int(r["index"]), float(r["alpha"]), int(r["beta"]), int(r["seed"]),
                 int(r["attempts"])))
rows.sort()

with open(snakemake.output[0], "w", newline="") as out:
    w = csv.writer(out)
    w.writerow(["index", "alpha", "beta", "seed", "loss", "attempts"])
    for loss, index, alpha, beta, seed, attempts in rows:
        w.writerow([index, alpha, beta, seed, f"{loss:.6f}", attempts])
