#!/bin/sh
# Runs the pool benchmarks built in a build directory ($1, or $MPMUX_BUILD_DIR, or ./build) and
# prints one table: contender, median, min, max, ratio to the baseline, and the machine.
# Builds nothing: make -C BUILD bench_pool_mpmux_thread bench_pool_mpmux_process bench_pool_condvar bench_pool_omp bench_pool_tbb
# The contenders run in ROUNDS rounds (default 3) of REPS repetitions each (default 5), taking
# turns, so that a change of machine load during the run reaches every contender alike; each
# median is over all the samples of its contender.
set -eu
build=${1:-${MPMUX_BUILD_DIR:-./build}}
reps=${REPS:-5}
rounds=${ROUNDS:-3}
here=$(cd "$(dirname "$0")" && pwd)
bin="$build/bench/pool"
samples=$(mktemp)
trap 'rm -f "$samples"' EXIT

for prog in bench_pool_omp bench_pool_tbb bench_pool_condvar bench_pool_mpmux_thread bench_pool_mpmux_process; do
  [ -x "$bin/$prog" ] || echo "note: $bin/$prog not built, skipped" >&2
done
round=0
while [ "$round" -lt "$rounds" ]; do
  for prog in bench_pool_omp bench_pool_tbb bench_pool_condvar bench_pool_mpmux_thread bench_pool_mpmux_process; do
    if [ -x "$bin/$prog" ]; then
      "$bin/$prog" "$reps" >>"$samples" || true
    fi
  done
  /usr/bin/python3 "$here/python_mp.py" "$reps" >>"$samples"
  round=$((round + 1))
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
/usr/bin/python3 - "$samples" "$(nproc)" "$cpu" <<'PY'
import os, statistics, sys
path, nproc, cpu = sys.argv[1], sys.argv[2], sys.argv[3]
data = {}
for line in open(path):
    parts = line.split()
    if len(parts) == 4 and parts[0] == "sample":
        data.setdefault(parts[1], {}).setdefault(parts[2], []).append(float(parts[3]))

# Baseline per question: the best competitor (lowest median); ratio = median / baseline's median.
baselines = {"thread_map_1e7": ["omp_dynamic", "tbb_parallel_for"],
             "process_map_1e6": ["python_mp"],
             "round_trip_per_task": ["python_mp"]}
print(f"{'question':<22}{'contender':<18}{'median_s':>12}{'min_s':>12}{'max_s':>12}{'ratio':>9}")
med = {}
for q in ["thread_map_1e7", "process_map_1e6", "round_trip_per_task"]:
    rows = data.get(q, {})
    meds = {c: statistics.median(v) for c, v in rows.items()}
    med[q] = meds
    base = [meds[c] for c in baselines[q] if c in meds]
    b = min(base) if base else None
    for c, v in sorted(rows.items(), key=lambda kv: meds[kv[0]]):
        ratio = f"{meds[c] / b:.2f}" if b else "-"
        print(f"{q:<22}{c:<18}{meds[c]:>12.6f}{min(v):>12.6f}{max(v):>12.6f}{ratio:>9}")
print(f"machine: nproc={nproc} cpu={cpu}")
out = os.environ.get("MPMUX_BENCH_OUT")
if out:  # the samples for bench/run.sh, the best baseline of each question marked
    with open(os.path.join(out, "pool.samples.tsv"), "w") as f:
        for q, rows in data.items():
            best = min((c for c in baselines.get(q, []) if c in rows), key=lambda c: med[q][c], default=None)
            for c, v in rows.items():
                f.writelines(f"{q}\t{c}{' (baseline)' if c == best else ''}\ts\t{x}\n" for x in v)
t = med.get("thread_map_1e7", {})
best = min([t[c] for c in ("omp_dynamic", "tbb_parallel_for") if c in t], default=None)
print(f"thread_vs_best_ratio={t['mpmux_thread'] / best:.2f}" if best and "mpmux_thread" in t
      else "thread_vs_best_ratio=nan")
p = med.get("process_map_1e6", {})
print(f"process_vs_python_ratio={p['python_mp'] / p['mpmux_process']:.1f}"
      if "python_mp" in p and "mpmux_process" in p else "process_vs_python_ratio=nan")
# The apply round trip against its floor, a bare condition-variable ping-pong (target <= 1.5).
r = med.get("round_trip_per_task", {})
print(f"round_trip_vs_condvar_ratio={r['mpmux_thread'] / r['condvar_pingpong']:.2f}"
      if "mpmux_thread" in r and "condvar_pingpong" in r else "round_trip_vs_condvar_ratio=nan")
PY
