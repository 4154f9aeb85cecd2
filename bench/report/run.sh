#!/usr/bin/env bash
# bench/report/run.sh [BUILD_DIR]: `mpmux report` of a session of about 10^6 attempts (journals
# written by bench_report_journal as two runs of 32 ranks on four hosts would, 0.55% failing).
# Targets (issue 14): the page under 20 MB and opened in under 3 s.
#  - report_write_s: `mpmux report` itself (median wall time).
#  - report_load_s: headless chromium taking a screenshot of the page (load, script, layout and
#    paint) minus the same for an empty page, i.e. what the page adds to the browser's own start.
# Contenders take turns for REPS rounds (default 3). Environment: REPS, N_ELEMENTS (1000000),
# MPMUX_BENCH_DIR (where files go; default a fresh directory in /tmp). Builds nothing:
# make -C BUILD mpmux_cli bench_report_journal. Needs chromium.
# Ends with attempts=, report_bytes=, report_write_s= and report_load_s=.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-3}
n=${N_ELEMENTS:-1000000}
mpmux="$build/bin/mpmux"
driver="$build/bench/report/bench_report_journal"
work=$(mktemp -d "${MPMUX_BENCH_DIR:-/tmp}/mpmux-report-XXXXXX")
trap 'rm -rf "$work"' EXIT
samples="$work/samples.txt"
: >"$samples"

chromium_shot() {  # PAGE: one headless screenshot of the page
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --no-first-run --user-data-dir="$work/profile" --window-size=1280,1600 --screenshot="$work/shot.png" \
    "file://$1" >/dev/null 2>&1
}
measure() {  # QUESTION CONTENDER COMMAND...: one sample line "QUESTION CONTENDER NANOSECONDS"
  local question=$1 contender=$2
  shift 2
  local t0
  t0=$(date +%s%N)
  "$@"
  echo "$question $contender $(($(date +%s%N) - t0))" >>"$samples"
}

echo "preparing: a session of $n elements in $work" >&2
dir=$("$mpmux" new "$work/mux" --range "$n")
id=$("$mpmux" session "$dir")
attempts=$("$driver" "$id")
echo '<!DOCTYPE html><html><head><meta charset="utf-8"><title>empty</title></head><body></body></html>' \
  >"$work/empty.html"
chromium_shot "$work/empty.html"  # the first start of a profile is slower: not a sample

for round in $(seq "$reps"); do
  echo "round $round of $reps" >&2
  measure write mpmux_report "$mpmux" report "$id" -o "$work/report.html"
  measure load empty_page chromium_shot "$work/empty.html"
  measure load report_page chromium_shot "$work/report.html"
done
bytes=$(stat -c %s "$work/report.html")

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
/usr/bin/python3 - "$samples" "$(nproc)" "$cpu" "$attempts" "$bytes" <<'PY'
import os
import statistics
import sys

path, nproc, cpu, attempts, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
data = {}
for line in open(path):
    q, c, s = line.split()
    data.setdefault(q, {}).setdefault(c, []).append(int(s) / 1e9)
baselines = {"load": "empty_page"}
print(f"{'question':<10}{'contender':<16}{'median_s':>10}{'min_s':>10}{'max_s':>10}{'ratio':>8}")
med = {(q, c): statistics.median(v) for q, cs in data.items() for c, v in cs.items()}
for q, cs in data.items():
    for c, v in cs.items():
        base = med.get((q, baselines.get(q)))
        ratio = f"{med[q, c] / base:.2f}" if base else "-"
        print(f"{q:<10}{c:<16}{med[q, c]:>10.2f}{min(v):>10.2f}{max(v):>10.2f}{ratio:>8}")
print(f"machine: nproc={nproc} cpu={cpu}")
out = os.environ.get("MPMUX_BENCH_OUT")
if out:  # the samples for bench/run.sh
    with open(os.path.join(out, "report.samples.tsv"), "w") as f:
        for q, cs in data.items():
            for c, v in cs.items():
                name = c + (" (baseline)" if baselines.get(q) == c else "")
                f.writelines(f"{q}, {attempts} attempts\t{name}\ts\t{x}\n" for x in v)
print(f"attempts={attempts}")
print(f"report_bytes={size}")
print(f"report_write_s={med['write', 'mpmux_report']:.2f}")
print(f"report_load_s={med['load', 'report_page'] - med['load', 'empty_page']:.2f}")
PY
