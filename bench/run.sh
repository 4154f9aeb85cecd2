#!/usr/bin/env bash
# bench/run.sh [--quick] BUILD_DIR: every benchmark, one driver. Configures and builds BUILD_DIR (a
# folder of its own) as Release without the tests, runs each bench/<question>/run.sh BUILD_DIR in
# turn (a failing one is reported as failed and the driver goes on), writes docs/benchmarks.md
# (the machine, one section per question: its tables, its figures against their targets in
# bench/targets.tsv, its markdown fragment) and ends by printing every figure, one name=value a
# line.
#
# Each run.sh gets REPS, MPMUX_BUILD_DIR and MPMUX_BENCH_OUT (a folder, shared by all): it may
# write there <question>.samples.tsv (group<TAB>contender<TAB>unit<TAB>value, one line per
# repetition; "(floor)" or "(baseline)" ending a contender's name makes it its group's
# reference), <question>.md (placed under the question's heading) and other files, such as an
# SVG, which are copied next to docs/benchmarks.md (refer to them by their bare name).
#
# Each also gets SCALE_CALIBRATION, the figures of the benches run before it (name=value lines;
# bench/scale, run last, reads it).
# --quick: REPS=1, small sizes and MPMUX_BENCH_QUICK=1, to try the driver (the page says so).
# Environment: REPS (5), BENCHES (the questions to run, e.g. "claim exec"; default every folder
# with a run.sh), BENCH_MD (docs/benchmarks.md). Logs stay in BUILD_DIR/bench-logs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/.." && pwd)
quick=0
if [ "${1:-}" = --quick ]; then
  quick=1
  shift
fi
if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bench/run.sh [--quick] BUILD_DIR" >&2
  exit 2
fi
reps=${REPS:-5}
[ "$quick" = 1 ] && reps=1
case $reps in
  '' | *[!0-9]* | 0)
    echo "bench/run.sh: REPS=$reps: expected a positive integer" >&2
    exit 2
    ;;
esac
md=${BENCH_MD:-$source_dir/docs/benchmarks.md}

questions=()
if [ -n "${BENCHES:-}" ]; then
  for q in $BENCHES; do
    [ -f "$here/$q/run.sh" ] || { echo "bench/run.sh: BENCHES: no bench/$q/run.sh" >&2; exit 2; }
    questions+=("$q")
  done
else
  for script in "$here"/*/run.sh; do
    q=$(basename "$(dirname "$script")")
    [ "$q" = scale ] || questions+=("$q")
  done
  # The scale model is calibrated with the others' figures (SCALE_CALIBRATION): it runs last.
  [ -f "$here/scale/run.sh" ] && questions+=(scale)
fi

mkdir -p "$1"
build=$(cd "$1" && pwd)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
echo "bench: building $build (Release)" >&2
# Only what the benches run: the tests are left out (a folder of its own, not the test build).
cmake -S "$source_dir" -B "$build" -DCMAKE_BUILD_TYPE=Release -DMPMUX_BENCHMARKS=ON -DMPMUX_TESTS=OFF "${launcher[@]}" >/dev/null
nice cmake --build "$build" -j "$(nproc)" >"$build/bench-build.log" 2>&1 ||
  { tail -30 "$build/bench-build.log" >&2; echo "bench: the build failed ($build/bench-build.log)" >&2; exit 1; }

# Sizes for --quick, per question (the same variable means different things in different benches).
quick_env() {
  case $1 in
    claim) echo CLAIMS=5000 N_ELEMENTS=20000 N_MPI4PY=2000 N_DASK=500 ;;
    exec) echo N_EXEC=300 SLURM_TASKS=10 ;;
    io) echo N_ROWS=20000 N_RESULTS=20000 N_RESULTS_BIG=100000 ;;
    kill) echo N_ELEMENTS=20 KILLS=2 SECONDS_PER_TASK=0.1 ;;
    overhead) echo N_ELEMENTS=5000 ;;
    plugin) echo SIDE=100 ;;
    pool) echo ROUNDS=1 ;;
    report) echo N_ELEMENTS=20000 ;;
    store) echo FILE_BATCHES=500 AZ_BATCHES=50 CROSSJOB_ELEMENTS=2000 ;;
  esac
}


logs=$build/bench-logs
out=$build/bench-out
rm -rf "$logs" "$out"
mkdir -p "$logs" "$out"
cut -d' ' -f1-3 /proc/loadavg >"$logs/loadavg.start"
: >"$logs/figures.txt"
# Every figure printed so far; a SCALE_CALIBRATION of the caller's own takes its place.
calibration=${SCALE_CALIBRATION:-$logs/figures.txt}
for q in "${questions[@]}"; do
  echo "bench: $q (REPS=$reps) ..." >&2
  extra=()
  # shellcheck disable=SC2207  # the words of quick_env are NAME=VALUE pairs
  [ "$quick" = 1 ] && extra=(MPMUX_BENCH_QUICK=1 $(quick_env "$q"))
  start=$SECONDS
  rc=0
  env REPS="$reps" MPMUX_BUILD_DIR="$build" MPMUX_BENCH_OUT="$out" SCALE_CALIBRATION="$calibration" \
    "${extra[@]}" bash "$here/$q/run.sh" "$build" >"$logs/$q.log" 2>"$logs/$q.err" </dev/null || rc=$?
  grep -E '^[a-z][a-z0-9_]*=[^ ]+$' "$logs/$q.log" >>"$logs/figures.txt" || true
  echo "$rc" >"$logs/$q.rc"
  echo $((SECONDS - start)) >"$logs/$q.seconds"
  if [ "$rc" = 0 ]; then
    echo "bench: $q done in $((SECONDS - start)) s" >&2
  else
    echo "bench: $q FAILED (exit $rc) after $((SECONDS - start)) s; see $logs/$q.err" >&2
  fi
done

quick_flag=()
[ "$quick" = 1 ] && quick_flag=(--quick)
/usr/bin/python3 "$here/write_benchmarks.py" --logs "$logs" --out "$out" --build "$build" \
  --targets "$here/targets.tsv" --md "$md" --reps "$reps" --questions "${questions[*]}" "${quick_flag[@]}"
echo "bench: wrote $md" >&2
