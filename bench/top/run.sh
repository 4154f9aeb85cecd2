#!/usr/bin/env bash
# bench/top/run.sh [BUILD_DIR]: what one frame of `mpmux top` costs on a session of 10^5 elements
# (N_ELEMENTS), all done by a --plugin run: the read (journals' fold, committed batches,
# heartbeats) and the layout, as `mpmux top ID > file` does once (a live top does the same each
# refresh, without the process start). Median, min and max of REPS (default 10) runs; the target
# (issue 14) is a refresh each second, so the frame must take well under a second.
# Builds nothing: make -C BUILD mpmux_cli rosenbrock. Ends with top_frame_s=.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-10}
n=${N_ELEMENTS:-100000}
mpmux="$build/bin/mpmux"
work=$(mktemp -d "${MPMUX_BENCH_DIR:-/tmp}/mpmux-top-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "preparing: a session of $n elements in $work" >&2
/usr/bin/python3 -c "
import sys
print('x,y')
for k in range($n):
    print(f'{k % 400 / 100 - 2:.2f},{k % 397 / 100 - 1:.2f}')
" >"$work/in.csv"
dir=$("$mpmux" new "$work/mux" --from "$work/in.csv")
id=$("$mpmux" session "$dir")
"$mpmux" run "$id" --plugin "$build/plugins/tasks/librosenbrock.so" --no-progress >/dev/null
"$mpmux" top "$id" >"$work/frame.txt"  # the page cache warm, as for every refresh but the first

samples="$work/samples.txt"
: >"$samples"
for _ in $(seq "$reps"); do
  t0=$(date +%s%N)
  "$mpmux" top "$id" >/dev/null
  echo $(($(date +%s%N) - t0)) >>"$samples"
done
cat "$work/frame.txt" >&2
/usr/bin/python3 - "$samples" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$n" <<'PY'
import statistics
import sys

path, nproc, cpu, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = sorted(int(line) / 1e9 for line in open(path))
print(f"machine: {nproc} cores, {cpu}")
print(f"{'question':<28} {'contender':<16} {'median_s':>9} {'min_s':>9} {'max_s':>9}")
print(f"{'top frame, %d elements' % n:<28} {'mpmux top':<16} {statistics.median(s):9.3f} {s[0]:9.3f} {s[-1]:9.3f}")
print(f"elements={n}")
print(f"top_frame_s={statistics.median(s):.3f}")
PY
