#!/usr/bin/env bash
# bench/claim/run.sh [BUILD_DIR]: the numbers of the claim layer, each against its contender,
# measured in this one run on this machine:
#   1. claim + read of one element, chunk 1, 2 ranks, on each path against its bare loop through
#      the same MPI component (node-shared memory and MPI_Get against MPI_Fetch_and_op + MPI_Get,
#      the two-sided service against an ADLB-style request/reply loop), under three transports:
#      Open MPI's defaults, --mca osc pt2pt,sm, and --mca btl self,tcp (where the remote path
#      falls back to two-sided);
#   2. elements/s of a Multiplexer<T> loop with an empty body (outcomes journaled), 2 ranks,
#      against mpi4py.futures MPIPoolExecutor.map(identity, chunksize=1), 2 ranks;
#   3. wall time per element of `mpmux run --exec true` with 2 workers (mpirun -n 3: rank 0
#      coordinates) against GNU parallel's per job with `parallel -j 2 true`.
# Ends with claim_vs_bare_ratio=, claim_published_vs_all_at_once_ratio= (the open hand-out's
# claim against today's, node-shared), elements_per_s_vs_mpi4py_ratio=, exec_vs_gnu_parallel_ratio=,
# and, under Open MPI's defaults, the claim's median cost in microseconds node-shared (claim_us=)
# and remote (claim_remote_us=) and a bare fetch-and-op's (atomic_us=), which the scale model
# (bench/scale) reads.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-5}
n_elements=${N_ELEMENTS:-20000}
n_exec=${N_EXEC:-6000}  # start-up (about 0.4 s for mpirun, 0.15 s for parallel) is amortized over the run
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun --oversubscribe)
work=$(mktemp -d /tmp/mpmux-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
samples=$work/samples.tsv

echo "1/3 claim + read, chunk 1, 2 ranks, per path and transport" >&2
claims=${CLAIMS:-100000}
declare -A transport_args=([defaults]="" [osc-pt2pt]="--mca osc pt2pt,sm" [btl-tcp]="--mca btl self,tcp")
for transport in defaults osc-pt2pt btl-tcp; do
  # A round trip over TCP loopback costs hundreds of microseconds on a loaded 2-core machine.
  n=$claims
  [ "$transport" = btl-tcp ] && n=$((claims / 20))
  # shellcheck disable=SC2086  # the MCA arguments are words
  "${mpirun[@]}" -n 2 ${transport_args[$transport]} "$build/bench/claim/bench_claim" --reps "$reps" \
    --claims "$n" >"$work/claim-$transport.txt"
  sed -n 's/^\([a-z_]*\)_path=\(.*\)/\1 \2/p' "$work/claim-$transport.txt" |
    while read -r contender path; do echo "  $transport $contender: $path" >&2; done
  grep -E '^[a-z_]+_us=' "$work/claim-$transport.txt" | while IFS='=' read -r key value; do
    [ "$value" = nan ] && continue  # the MPI could not make that bare contender's windows
    contender=${key%_us}
    path=$(sed -n "s/^${contender}_path=//p" "$work/claim-$transport.txt")
    printf '%s: %s%s\tus/claim\t%s\n' "$transport" "$contender" "${path:+ ($path)}" "$value"
  done >>"$samples"
done
echo "2/3 elements/s, empty task, 2 ranks, $n_elements elements" >&2
"${mpirun[@]}" -n 2 "$build/bench/claim/bench_multiplexer" "$n_elements" "$reps" "$work" |
  sed -n 's/^multiplexer_s=\([0-9.]*\) elements=\([0-9]*\)/\1 \2/p' |
  awk '{ printf "Multiplexer<T> loop, journaled\telements/s\t%f\n", $2 / $1 }' >>"$samples"
"${mpirun[@]}" -n 2 /usr/bin/python3 -m mpi4py.futures "$here/mpi4py_futures.py" "$n_elements" "$reps" |
  sed -n 's/^mpi4py_s=\([0-9.]*\) elements=\([0-9]*\)/\1 \2/p' |
  awk '{ printf "mpi4py.futures map, chunksize 1 (baseline)\telements/s\t%f\n", $2 / $1 }' >>"$samples"

echo "3/3 --exec true per element, 2 workers, $n_exec elements" >&2
mpmux=$build/bin/mpmux
mux_dir=$("$mpmux" new "$work/mux" --range "$n_exec")
for _ in $(seq "${REPS_EXEC:-3}"); do
  id=$("$mpmux" session "$mux_dir")
  t0=$(date +%s%N)
  "${mpirun[@]}" -n 3 "$mpmux" run "$id" --exec true --no-progress
  t1=$(date +%s%N)
  "$mpmux" done "$id" >/dev/null
  printf 'mpmux run --exec true (mpirun -n 3)\tus/element\t%s\n' $(((t1 - t0) / 1000 / n_exec)) >>"$samples"
  t0=$(date +%s%N)
  seq "$n_exec" | parallel -j 2 true
  t1=$(date +%s%N)
  printf 'GNU parallel -j 2 true (baseline)\tus/element\t%s\n' $(((t1 - t0) / 1000 / n_exec)) >>"$samples"
done

/usr/bin/python3 "$here/table.py" <"$samples"
median() { grep -F "$1" "$samples" | cut -f3 | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for transport in defaults osc-pt2pt btl-tcp; do
  for path in "" _remote _two_sided; do
    a=$(median "$transport: claimer$path ")
    b=$(median "$transport: bare$path"$'\t')
    [ -n "$b" ] && [ "$b" != 0 ] && awk -v a="$a" -v b="$b" -v k="claim${path}_vs_bare_ratio_${transport//-/_}" \
      'BEGIN { printf "%s=%.2f\n", k, a / b }'
  done
done
for transport in defaults osc-pt2pt btl-tcp; do
  a=$(median "$transport: claimer_published ")
  b=$(median "$transport: claimer (")
  [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" -v k="claim_published_vs_all_at_once_ratio_${transport//-/_}" \
    'BEGIN { printf "%s=%.2f\n", k, a / b }'
done
awk -v a="$(median 'Multiplexer')" -v b="$(median 'mpi4py')" 'BEGIN { printf "elements_per_s_vs_mpi4py_ratio=%.1f\n", a / b }'
awk -v a="$(median 'mpmux run')" -v b="$(median 'GNU parallel')" 'BEGIN { printf "exec_vs_gnu_parallel_ratio=%.3f\n", a / b }'
for figure in "claim_us:defaults: claimer (" "claim_remote_us:defaults: claimer_remote " "atomic_us:defaults: bare"$'\t'; do
  v=$(median "${figure#*:}")
  if [ -n "$v" ]; then printf '%s=%s\n' "${figure%%:*}" "$v"; fi
done
