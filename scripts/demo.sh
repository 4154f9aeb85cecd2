#!/usr/bin/env bash
# Installs what is missing, builds, and runs a real sweep end to end: a 240-point parameter
# grid processed by `mpirun -n 3 mpmux run` with progress, then the session's counts and its
# results (results.h5, read with h5py, and a CSV export).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build=${MPMUX_BUILD_DIR:-build}
mpmux=$(cd "$build" && pwd)/bin/mpmux
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

work=${MPMUX_DEMO_DIR:-$(mktemp -d /tmp/mpmux-demo-XXXXXX)}
mkdir -p "$work"
# The "simulation": a short computation on its parameters; its stdout is the element's result.
cat >"$work/sim.sh" <<'SIM'
#!/bin/sh
# sim.sh ALPHA BETA SEED: pretends to work for a moment, prints a loss
sleep 0.0$((${3} % 5))
awk -v a="$1" -v b="$2" -v s="$3" 'BEGIN { printf "%.6f\n", (a - 0.3)^2 + (b - 2)^2 / 10 + (s % 7) / 1000 }'
SIM
chmod +x "$work/sim.sh"

set -x
mux_dir=$("$mpmux" new "$work/mux" --grid alpha=0:1:0.1 beta=1,2,3,4 seed=0:6 --tag demo)
mux_id=$("$mpmux" session "$mux_dir")
mpirun -q -n 3 --oversubscribe "$mpmux" run "$mux_id" --progress-interval 1 --exec "$work/sim.sh {alpha} {beta} {seed}"
"$mpmux" stat "$mux_id"
"$mpmux" done "$mux_id"
"$mpmux" results "$mux_id" --format csv -o "$work/results.csv"
set +x
results_h5=$(ls "$mux_dir"/sessions/*/results.h5)
echo
echo "The results, read with h5py from $results_h5:"
/usr/bin/python3 - "$results_h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    r = f["/results"][:]
    print(f"  {len(r)} rows; columns: {', '.join(r.dtype.names)}")
    loss = [float(x) for x in r["result"]]
    best = min(range(len(r)), key=loss.__getitem__)
    print(f"  best point: element {best}: alpha={r['alpha'][best]:.1f} beta={r['beta'][best]} "
          f"seed={r['seed'][best]} loss={loss[best]:.6f} (rank {r['rank'][best]}, {r['duration'][best]*1000:.0f} ms)")
PY
echo "The same as CSV: $work/results.csv"
echo "Session: $mux_id"
