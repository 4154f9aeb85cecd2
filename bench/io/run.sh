#!/usr/bin/env bash
# bench/io/run.sh [BUILD_DIR]: mpmux's own I/O.
#  - new_1e6x8: `mpmux new` of a CSV of 10^6 rows and 8 columns against pandas.read_csv plus an
#    h5py write of the same table (pandas_h5py.py); target: no slower (ratio <= 1).
#  - results_1e6, results_1e7: `mpmux results --format csv` of a session whose every element is
#    done (journals written by bench_io_journal as two workers would); target: under 100 MB
#    resident for 10^7 and time linear in the outcomes.
#  - stat_1e7: `mpmux stat` of the 10^7 session (counts through the same fold); target: its peak
#    resident memory does not grow with the session.
# Each run is measured with /usr/bin/time -v (wall time, peak resident memory); contenders take
# turns for REPS rounds (default 3). Environment: REPS, N_ROWS (1000000), N_RESULTS (1000000),
# N_RESULTS_BIG (10000000), MPMUX_BENCH_DIR (where files go; default a fresh directory in /tmp).
# Builds nothing: make -C BUILD mpmux_cli bench_io_journal. Needs python3-pandas and python3-h5py.
#  - journal_syncs: fdatasyncs per second of a journal in the bench directory, one record each
#    (what a group commit costs rank 0 there; the scale model, bench/scale, reads it).
# Ends with new_vs_pandas_ratio=<mpmux time / pandas time>, results_peak_rss_mb_1e7=<MB>,
# stat_peak_rss_mb_1e7=<MB> and journal_syncs_per_s=<median>.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-3}
rows=${N_ROWS:-1000000}
n_small=${N_RESULTS:-1000000}
n_big=${N_RESULTS_BIG:-10000000}
mpmux="$build/bin/mpmux"
driver="$build/bench/io/bench_io_journal"
work=$(mktemp -d "${MPMUX_BENCH_DIR:-/tmp}/mpmux-io-XXXXXX")
trap 'rm -rf "$work"' EXIT
samples="$work/samples.txt"
: >"$samples"

# measure QUESTION CONTENDER ROWS COMMAND...: one sample line "QUESTION CONTENDER ROWS SECONDS RSS_KB".
measure() {
  local question=$1 contender=$2 n=$3
  shift 3
  /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null
  awk -v q="$question" -v c="$contender" -v n="$n" '
    /Elapsed \(wall clock\)/ { k = split($NF, t, ":"); s = 0; for (i = 1; i <= k; i++) s = s * 60 + t[i] }
    /Maximum resident set size/ { rss = $NF }
    END { print q, c, n, s, rss }' "$work/time.txt" >>"$samples"
}

echo "preparing: a ${rows}-row CSV, sessions of $n_small and $n_big done elements in $work" >&2
/usr/bin/python3 "$here/make_csv.py" "$work/in.csv" "$rows"
session_of() {  # N -> mux id of a --range N set whose elements are all done
  local dir
  dir=$("$mpmux" new "$work/sessions" --range "$1" --tag "n$1")
  local id
  id=$("$mpmux" session "$dir")
  "$driver" "$id"
  echo "$id"
}
id_small=$(session_of "$n_small")
id_big=$(session_of "$n_big")

for round in $(seq "$reps"); do
  echo "round $round of $reps" >&2
  rm -rf "$work/new"
  measure new_1e6x8 mpmux_new "$rows" "$mpmux" new "$work/new" --from "$work/in.csv"
  rm -f "$work/pandas.h5"
  measure new_1e6x8 pandas_h5py "$rows" /usr/bin/python3 "$here/pandas_h5py.py" "$work/in.csv" "$work/pandas.h5"
  measure results_1e6 mpmux_results_csv "$n_small" "$mpmux" results "$id_small" --format csv
  measure results_1e7 mpmux_results_csv "$n_big" "$mpmux" results "$id_big" --format csv
  measure stat_1e7 mpmux_stat "$n_big" "$mpmux" stat "$id_big"
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
/usr/bin/python3 - "$samples" "$(nproc)" "$cpu" <<'PY'
import os
import statistics
import sys

path, nproc, cpu = sys.argv[1], sys.argv[2], sys.argv[3]
data = {}
for line in open(path):
    q, c, n, s, rss = line.split()
    data.setdefault(q, {}).setdefault(c, []).append((float(s), int(n), int(rss)))
baselines = {"new_1e6x8": "pandas_h5py"}
print(f"{'question':<14}{'contender':<20}{'median_s':>10}{'min_s':>10}{'max_s':>10}{'rows/s':>12}"
      f"{'peak_rss_mb':>13}{'ratio':>8}")
med, rss = {}, {}
for q, contenders in data.items():
    for c, v in contenders.items():
        med[q, c] = statistics.median(s for s, _, _ in v)
        rss[q, c] = max(r for _, _, r in v) / 1024
    for c, v in sorted(contenders.items(), key=lambda kv: med[q, kv[0]]):
        times = [s for s, _, _ in v]
        base = med.get((q, baselines.get(q)), None)
        ratio = f"{med[q, c] / base:.2f}" if base else "-"
        print(f"{q:<14}{c:<20}{med[q, c]:>10.2f}{min(times):>10.2f}{max(times):>10.2f}"
              f"{v[0][1] / med[q, c]:>12.0f}{rss[q, c]:>13.1f}{ratio:>8}")
print(f"machine: nproc={nproc} cpu={cpu}")
out = os.environ.get("MPMUX_BENCH_OUT")
if out:  # the samples for bench/run.sh: wall time and peak resident memory per run
    with open(os.path.join(out, "io.samples.tsv"), "w") as f:
        for q, contenders in data.items():
            for c, v in contenders.items():
                name = c + (" (baseline)" if baselines.get(q) == c else "")
                f.writelines(f"{q}, {v[0][1]} rows\t{name}\ts\t{t}\n" for t, _, _ in v)
                f.writelines(f"{q}, peak resident memory\t{name}\tMB\t{r / 1024:.1f}\n" for _, _, r in v)
small, big = med.get(("results_1e6", "mpmux_results_csv")), med.get(("results_1e7", "mpmux_results_csv"))
if small and big:
    print(f"results_time_1e7_vs_1e6={big / small:.1f} (linear: 10)")
new, pandas = med.get(("new_1e6x8", "mpmux_new")), med.get(("new_1e6x8", "pandas_h5py"))
print(f"new_vs_pandas_ratio={new / pandas:.2f}" if new and pandas else "new_vs_pandas_ratio=nan")
r = rss.get(("results_1e7", "mpmux_results_csv"))
print(f"results_peak_rss_mb_1e7={r:.1f}" if r else "results_peak_rss_mb_1e7=nan")
r = rss.get(("stat_1e7", "mpmux_stat"))
print(f"stat_peak_rss_mb_1e7={r:.1f}" if r else "stat_peak_rss_mb_1e7=nan")
PY
mkdir -p "$work/syncs"
for _ in $(seq "$reps"); do "$driver" --syncs "$work/syncs" 1; done | sed -n 's/^journal_syncs_per_s=//p' | sort -g |
  awk '{ v[NR] = $1 } END { printf "journal_syncs_per_s=%.1f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
