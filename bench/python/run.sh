#!/usr/bin/env bash
# bench/python/run.sh [BUILD_DIR]: elements/s of the Python loop `for x in Multiplexer(mux_id,
# comm=comm)` with an empty body, 2 ranks under mpirun, against
#   - mpi4py.futures MPIPoolExecutor.map(identity, chunksize=1), 2 ranks (bench/claim's), and
#   - the C++ Multiplexer<T> loop with an empty body, 2 ranks (bench/claim's bench_multiplexer),
# all three journaled with the defaults, taking turns, each repetition on a fresh session.
# Environment: REPS (5), N_ELEMENTS (200000: the Python and C++ loops), N_MPI4PY (2000: at ~300 us
# an element, mpi4py needs fewer to take as long). Needs the targets mpmux and bench_multiplexer
# built and Debian's python3-mpi4py. Ends with python_vs_mpi4py_ratio=<Python el/s / mpi4py's>
# (target >= 50) and python_vs_cpp_ratio=<C++ el/s / Python's> (target <= 10).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-5}
n=${N_ELEMENTS:-200000}
n_mpi4py=${N_MPI4PY:-2000}
cpp=$build/bench/claim/bench_multiplexer
for f in "$cpp" "$build/python/mpmux/__init__.py"; do
  [ -e "$f" ] || { echo "bench/python: $f is missing: build it first" >&2; exit 2; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PYTHONPATH=$build/python${PYTHONPATH:+:$PYTHONPATH}
python=/usr/bin/python3  # Debian's, with mpi4py
mpirun=(mpirun --oversubscribe -n 2)
work=$(mktemp -d /tmp/mpmux-bench-python-XXXXXX)
trap 'rm -rf "$work"' EXIT
samples=$work/samples.tsv
group="elements/s, empty body, 2 ranks"

echo "elements/s, 2 ranks, $reps repetitions: Python and C++ loops over $n elements, mpi4py over $n_mpi4py" >&2
for _ in $(seq "$reps"); do
  "${mpirun[@]}" "$python" "$here/loop.py" "$n" 1 "$work/mux" |
    sed -n 's/^python_s=\([0-9.]*\) elements=\([0-9]*\)/\1 \2/p' |
    awk -v g="$group" '{ printf "%s\tPython for x in Multiplexer(id)\telements/s\t%f\n", g, $2 / $1 }' >>"$samples"
  "${mpirun[@]}" "$cpp" "$n" 1 "$work/mux" |
    sed -n 's/^multiplexer_s=\([0-9.]*\) elements=\([0-9]*\)/\1 \2/p' |
    awk -v g="$group" '{ printf "%s\tC++ Multiplexer<T> loop\telements/s\t%f\n", g, $2 / $1 }' >>"$samples"
  "${mpirun[@]}" "$python" -m mpi4py.futures "$here/../claim/mpi4py_futures.py" "$n_mpi4py" 1 |
    sed -n 's/^mpi4py_s=\([0-9.]*\) elements=\([0-9]*\)/\1 \2/p' |
    awk -v g="$group" '{ printf "%s\tmpi4py.futures map, chunksize 1 (baseline)\telements/s\t%f\n", g, $2 / $1 }' >>"$samples"
done

[ -n "${MPMUX_BENCH_OUT:-}" ] && cp "$samples" "$MPMUX_BENCH_OUT/python.samples.tsv"
"$python" "$here/../claim/table.py" <"$samples"
median() { awk -F'\t' -v c="$1" 'index($2, c) == 1 { print $4 }' "$samples" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
py=$(median 'Python')
cxx=$(median 'C++')
mpi4py=$(median 'mpi4py')
printf 'python_elements_per_s=%.0f\ncpp_elements_per_s=%.0f\nmpi4py_elements_per_s=%.0f\n' "$py" "$cxx" "$mpi4py"
awk -v a="$py" -v b="$mpi4py" 'BEGIN { printf "python_vs_mpi4py_ratio=%.1f\n", a / b }'
awk -v a="$cxx" -v b="$py" 'BEGIN { printf "python_vs_cpp_ratio=%.2f\n", a / b }'
