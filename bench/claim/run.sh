#!/usr/bin/env bash
# bench/claim/run.sh [BUILD_DIR]: the numbers of the claim layer, each against its contender,
# measured in this one run on this machine:
#   1. claim + read of one element, chunk 1, 2 ranks, on each path against its bare loop through
#      the same MPI component (node-shared memory against MPI_Fetch_and_op + MPI_Get on shared
#      windows, the remote path with MPMUX_RMA_NO_SHARED=1 against the same calls on the same
#      kinds of windows, the two-sided service against an ADLB-style request/reply loop), under
#      three transports: Open MPI's defaults, --mca osc pt2pt,sm, and --mca btl self,tcp (where
#      the remote path falls back to two-sided); each row names the components serving its windows;
#   2. elements/s of a Multiplexer<T> loop with an empty body (outcomes journaled), 2 ranks,
#      against mpi4py.futures MPIPoolExecutor.map(identity, chunksize=1), 2 ranks, and
#      dask.distributed's LocalCluster (2 worker processes of one thread, Client.map, one task per
#      element). Each runs as many elements as it gets through in a few seconds: the loop's time
#      includes its open (rank 0 reads the set and fills the windows), the pools' excludes their
#      start.
# The cost of `mpmux run --exec` is bench/exec's question.
# Environment: REPS (5), CLAIMS (100000), N_ELEMENTS (2000000, the Multiplexer<T> loop's),
# N_MPI4PY (20000: mpi4py.futures does about 3,000 a second), N_DASK (5000: dask about 500). Ends with, under Open MPI's defaults, claim_vs_bare_ratio= (node-shared,
# against bare_shared: the bare loop on MPI_Win_allocate_shared windows, osc/sm as the
# claimer's) and remote_claim_vs_bare_ratio= (against bare_remote), target <= 1.2 each, and
# claim_us=, claim_remote_us= (the claimer's medians) and bare_us= (the bare loop on
# MPI_Win_allocate windows), which calibrate bench/scale; per transport,
# claim[_remote|_two_sided]_vs_bare_ratio_<transport>= (node-shared against bare, on
# MPI_Win_allocate windows) and claim_published_vs_all_at_once_ratio_<transport>= (the open
# hand-out's claim against today's, node-shared); elements_per_s_vs_mpi4py_ratio= (target >= 500)
# and elements_per_s_vs_dask_ratio=.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-5}
n_elements=${N_ELEMENTS:-2000000}
n_mpi4py=${N_MPI4PY:-20000}
n_dask=${N_DASK:-5000}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun --oversubscribe)
work=$(mktemp -d /tmp/mpmux-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
samples=$work/samples.tsv

echo "1/2 claim + read, chunk 1, 2 ranks, per path and transport" >&2
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
  # One sample per repetition (bench_claim's contenders take turns in each).
  grep -E '^sample_us [a-z_]+ ' "$work/claim-$transport.txt" | while read -r _ contender value; do
    [ "$value" = nan ] && continue  # the MPI could not make that bare contender's windows
    path=$(sed -n "s/^${contender}_path=//p" "$work/claim-$transport.txt")
    case $contender in
      *_remote) kind=remote ;;
      *_two_sided) kind=two-sided ;;
      *) kind=node-shared ;;
    esac
    # The floor of each path: the bare loop through the components serving the claimer's windows.
    floor=""
    case $contender in bare_shared | bare_remote | bare_two_sided) floor=" (floor)" ;; esac
    printf 'claim + read, %s, %s\t%s%s%s\tus/claim\t%s\n' "$transport" "$kind" "$contender" "${path:+ ($path)}" \
      "$floor" "$value"
  done >>"$samples"
done
echo "2/2 elements/s, empty task, 2 ranks: $n_elements, $n_mpi4py (mpi4py.futures), $n_dask (dask) elements" >&2
"${mpirun[@]}" -n 2 "$build/bench/claim/bench_multiplexer" "$n_elements" "$reps" "$work" |
  sed -n 's/^multiplexer_s=\([0-9.]*\) elements=\([0-9]*\)/\1 \2/p' |
  awk '{ printf "elements/s, empty task, 2 ranks\tMultiplexer<T> loop, journaled\telements/s\t%f\n", $2 / $1 }' >>"$samples"
"${mpirun[@]}" -n 2 /usr/bin/python3 -m mpi4py.futures "$here/mpi4py_futures.py" "$n_mpi4py" "$reps" |
  sed -n 's/^mpi4py_s=\([0-9.]*\) elements=\([0-9]*\)/\1 \2/p' |
  awk '{ printf "elements/s, empty task, 2 ranks\tmpi4py.futures map, chunksize 1 (baseline)\telements/s\t%f\n", $2 / $1 }' >>"$samples"
/usr/bin/python3 "$here/dask_local.py" "$n_dask" "$reps" 2 |
  sed -n 's/^dask_s=\([0-9.]*\) elements=\([0-9]*\)/\1 \2/p' |
  awk '{ printf "elements/s, empty task, 2 ranks\tdask.distributed LocalCluster, 2 workers, Client.map\telements/s\t%f\n", $2 / $1 }' >>"$samples"

[ -n "${MPMUX_BENCH_OUT:-}" ] && cp "$samples" "$MPMUX_BENCH_OUT/claim.samples.tsv"
/usr/bin/python3 "$here/table.py" <"$samples"
# median GROUP CONTENDER_PREFIX: the median of the samples of the contenders named so in that group.
median() {
  awk -F'\t' -v g="$1" -v c="$2" '$1 == g && index($2, c) == 1 { print $4 }' "$samples" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() {  # NAME A B FORMAT: NAME=A/B, nan when either is missing
  awk -v k="$1" -v a="$2" -v b="$3" -v f="$4" 'BEGIN { if (a == "" || b == "" || b == 0) print k "=nan"; else printf "%s=" f "\n", k, a / b }'
}
for transport in defaults osc-pt2pt btl-tcp; do
  for path in "" _remote _two_sided; do
    case $path in
      _remote) kind=remote ;;
      _two_sided) kind=two-sided ;;
      *) kind=node-shared ;;
    esac
    group="claim + read, $transport, $kind"
    b=$(median "$group" "bare$path ")
    [ -n "$b" ] && ratio "claim${path}_vs_bare_ratio_${transport//-/_}" "$(median "$group" "claimer$path ")" "$b" %.2f
  done
  group="claim + read, $transport, node-shared"
  a=$(median "$group" "claimer_published ")
  [ -n "$a" ] && ratio "claim_published_vs_all_at_once_ratio_${transport//-/_}" "$a" "$(median "$group" "claimer ")" %.2f
done
shared="claim + read, defaults, node-shared"
remote="claim + read, defaults, remote"
ratio claim_vs_bare_ratio "$(median "$shared" "claimer ")" "$(median "$shared" "bare_shared ")" %.2f
ratio remote_claim_vs_bare_ratio "$(median "$remote" "claimer_remote ")" "$(median "$remote" "bare_remote ")" %.2f
figure() { awk -v k="$1" -v v="$2" -v f="$3" 'BEGIN { if (v == "") print k "=nan"; else printf "%s=" f "\n", k, v }'; }
figure claim_us "$(median "$shared" "claimer ")" %.4f
figure claim_remote_us "$(median "$remote" "claimer_remote ")" %.4f
figure bare_us "$(median "$shared" "bare ")" %.4f
rate="elements/s, empty task, 2 ranks"
ratio elements_per_s_vs_mpi4py_ratio "$(median "$rate" Multiplexer)" "$(median "$rate" mpi4py)" %.1f
ratio elements_per_s_vs_dask_ratio "$(median "$rate" Multiplexer)" "$(median "$rate" dask)" %.1f
