#!/usr/bin/env bash
# bench/kill/run.sh [BUILD_DIR]: the kill window. A session of N_ELEMENTS (200) elements whose
# --exec task sleeps SECONDS_PER_TASK (0.2) runs under `mpirun -n 3` (two workers); the job
# (mpirun's process group and every rank) is killed with SIGKILL KILLS (10) times at random
# moments and re-run until done
# (tests/integration/kill_window.py). Prints how many elements ran to the end more than once, and
# per kill the elements that had ended but were not journaled. SEED repeats a run; MPMUX picks
# another mpmux binary (to compare with an older build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
export MPMUX=${MPMUX:-$build/bin/mpmux} MPIEXEC=${MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d "${MPMUX_BENCH_DIR:-/tmp}/mpmux-kill-XXXXXX")
trap 'rm -rf "$work"' EXIT
PYTHONPATH="$here/../../tests/integration" /usr/bin/python3 - "$work" <<'PY'
import os, random, subprocess, sys
import kill_window
from mpmuxtest import MPMUX, mpmux
from test_crash import become_subreaper

work = sys.argv[1]
n, seconds, kills = int(os.environ.get("N_ELEMENTS", 200)), float(os.environ.get("SECONDS_PER_TASK", 0.2)), int(os.environ.get("KILLS", 10))
seed = int(os.environ.get("SEED", random.SystemRandom().randrange(1 << 32)))
become_subreaper()  # orphaned tasks come here, and are waited for
mux_dir = mpmux("new", os.path.join(work, "mux"), "--range", n, check=0).stdout.strip()
mux_id = mpmux("session", mux_dir, check=0).stdout.strip()
print(f"kill window: {n} elements of {seconds} s, 2 workers, {kills} SIGKILLs of the job, seed {seed}, {MPMUX}")
f = kill_window.kill_and_rerun(MPMUX, work, mux_id, n, seconds, kills, seed)
unjournaled = sum(len(k["unjournaled"]) for k in f["per_kill"])
in_flight = sum(len(k["in_flight"]) for k in f["per_kill"])
print(f"kills                                      {f['kills']}")
print(f"elements that ran to the end twice or more {f['ended_twice']}")
print(f"extra executions to the end                {f['extra_ends']}")
print(f"  of them by tasks that outlived the kill  {f['orphan_ends']}")
print(f"  ended before a kill, not journaled       {unjournaled}")
print(f"elements started twice or more             {f['started_twice']}")
print(f"tasks in flight at the kills               {in_flight}")
print(f"ran_twice={f['ended_twice']}")
PY
