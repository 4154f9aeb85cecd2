#!/usr/bin/env bash
# Installs what is missing, builds, and runs a real sweep end to end: a 240-point parameter
# grid processed by `mpirun -n 3 mpmux run`, with a progress bar, then the session's counts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build=${MPMUX_BUILD_DIR:-build}
mpmux=$PWD/$build/bin/mpmux
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

work=${MPMUX_DEMO_DIR:-$(mktemp -d /tmp/mpmux-demo-XXXXXX)}
mkdir -p "$work/out"
# The "simulation": a short computation on its parameters, its answer on stdout.
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
mpirun -n 3 --oversubscribe "$mpmux" run "$mux_id" --progress-interval 1 \
  --exec "sh -c '$work/sim.sh \"\$1\" \"\$2\" \"\$3\" > $work/out/\$4.txt' sim {alpha} {beta} {seed} {#}"
"$mpmux" stat "$mux_id"
"$mpmux" done "$mux_id"
set +x
echo
echo "The grid (elements.h5, /elements/table), read with h5py:"
/usr/bin/python3 - "$mux_dir/elements.h5" "$work/out" <<'PY'
import os, sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    table = f["/elements/table"][:]
    print(f"  {len(table)} rows, columns {table.dtype.names}, encoding {f['/elements'].attrs['encoding']}")
    best = min(range(len(table)), key=lambda i: float(open(os.path.join(sys.argv[2], f"{i}.txt")).read()))
    print(f"  best point: element {best}, {dict(zip(table.dtype.names, table[best].tolist()))}")
PY
echo "Session: $mux_id"
echo "Outputs: $work/out/<index>.txt"
