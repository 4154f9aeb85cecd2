#!/usr/bin/env bash
# bench/plugin/run.sh [BUILD_DIR]: elements per second of an in-process task against the C++ loop,
# both under `mpirun -n 3` (rank 0 journals, 2 worker ranks), both journaled with group commit,
# both rates read from the same progress line (from the run's start to its journal flush):
#   --plugin    `mpmux run --plugin librosenbrock.so` over a 1000 x 1000 --grid of points x, y
#               (each element a JSON object; the plugin parses it and prints f(x, y));
#   Multiplexer a Multiplexer<std::uint64_t> loop with an empty body over as many elements
#               (bench_plugin_multiplexer), the loop of bench/claim.
# A fresh session per repetition; the contenders take turns. Needs the targets mpmux, rosenbrock,
# bench_plugin_multiplexer and bench_plugin_make_set built. Environment: REPS (5), SIDE (1000:
# SIDE^2 elements). Ends with plugin_vs_multiplexer_ratio=<C++ loop's elements/s / --plugin's>.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-5}
side=${SIDE:-1000}
n=$((side * side))
mpmux=$build/bin/mpmux
plugin=$build/plugins/tasks/librosenbrock.so
for f in "$mpmux" "$plugin" "$build/bench/plugin/bench_plugin_multiplexer" "$build/bench/plugin/bench_plugin_make_set"; do
  [ -e "$f" ] || { echo "bench/plugin: $f is missing: build it first" >&2; exit 2; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun --oversubscribe -n 3)
work=$(mktemp -d /tmp/mpmux-bench-plugin-XXXXXX)
trap 'rm -rf "$work"' EXIT
samples=$work/samples.tsv

# The rate of the last progress line: "mpmux: N/N elements (100.0%), R/s, elapsed ..."
rate_of() { sed -n 's|^mpmux: \([0-9]*\)/\1 elements (100.0%), \([0-9.]*\)/s, elapsed.*|\2|p' "$1" | tail -1; }

echo "elements/s, $n elements, mpirun -n 3 (2 workers), $reps repetitions" >&2
step=$(awk -v s="$side" 'BEGIN { printf "%g", 4 / s }')
grid_dir=$("$mpmux" new "$work/mux" --grid "x=-2:2:$step" "y=-1:3:$step" --tag grid)
cxx_dir=$("$build/bench/plugin/bench_plugin_make_set" "$work/mux" "$n")
total=$("$mpmux" stat "$("$mpmux" session "$grid_dir")" --json | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])')
[ "$total" = "$n" ] || { echo "bench/plugin: the grid has $total elements, not $n" >&2; exit 1; }
for _ in $(seq "$reps"); do
  id=$("$mpmux" session "$grid_dir")
  "${mpirun[@]}" "$mpmux" run "$id" --plugin "$plugin" --progress-interval 1 2>"$work/plugin.err"
  "$mpmux" done "$id" >/dev/null || { echo "bench/plugin: --plugin left elements undone" >&2; exit 1; }
  printf 'elements/s, %s elements, 2 workers\tmpmux run --plugin librosenbrock.so\telements/s\t%s\n' "$n" "$(rate_of "$work/plugin.err")" >>"$samples"
  rm -rf "$grid_dir/sessions/${id#*#s=}"  # a journal and results.h5 of 10^6 elements each time
  id=$("$mpmux" session "$cxx_dir")
  "${mpirun[@]}" "$build/bench/plugin/bench_plugin_multiplexer" "$id" $((n * (n - 1) / 2)) 2>"$work/cxx.err"
  printf 'elements/s, %s elements, 2 workers\tMultiplexer<T> loop, empty body (baseline)\telements/s\t%s\n' "$n" "$(rate_of "$work/cxx.err")" >>"$samples"
  rm -rf "$cxx_dir/sessions/${id#*#s=}"
done

[ -n "${MPMUX_BENCH_OUT:-}" ] && cp "$samples" "$MPMUX_BENCH_OUT/plugin.samples.tsv"
/usr/bin/python3 "$here/../claim/table.py" <"$samples"
median() { grep -F "$1" "$samples" | cut -f4 | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
awk -v a="$(median 'Multiplexer')" -v b="$(median 'mpmux run')" 'BEGIN { printf "plugin_vs_multiplexer_ratio=%.2f\n", a / b }'
