#!/usr/bin/env bash
# bench/store/run.sh BUILD_DIR: batch claims per second through the object store (each a claim
# and its done commit, no work in between), measured in this one run on this machine:
#   1. file:// on local disk, 2 claimant processes, batches of 1: O_EXCL and link(), with and
#      without fsync (the store's default syncs each object and its folder);
#   2. Azurite (az://, path-style on 127.0.0.1), 2 claimants, batches of 1, 16 and 256, with the
#      overhead per element;
#   3. what sharing a session costs a job: `mpirun -n 3 mpmux run` (2 workers, one thread each)
#      over a file:// session of 100,000 elements that sleep 1 ms (--plugin bench_sleep_task):
#      two such jobs at once, each on a session of 50,000 of its own, then two at once on one
#      session of 100,000;
#      and, for reference, one job alone on an idle machine.
# Each repetition's store is a new folder, and all are removed at the end: ext4 slows the creation
# of files right after many were deleted (it skips recently freed inodes), which would measure
# the clean-up of the previous repetition rather than the claims.
# Ends with file_claims_per_s= (O_EXCL, no fsync, median), azurite_claims_per_s_batch_N= and
# crossjob_overhead_ratio=<elements/s per worker of two jobs on sessions of their own / of two
# jobs on one session> (median of the repetitions; 1.0 when sharing costs nothing). Both sides
# run two jobs at once, so that the ratio is the cost of sharing a session, not that of sharing
# 2 cores between 6 processes; crossjob_vs_alone_ratio= compares one job alone with the two jobs
# on one session.
# Environment: REPS (3), FILE_BATCHES, AZ_BATCHES, CROSSJOB_ELEMENTS (100000), SKIP_AZURITE=1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
bench=$build/bench/store/bench_store_claims
reps=${REPS:-3}
file_batches=${FILE_BATCHES:-20000}
az_batches=${AZ_BATCHES:-1000}
work=$(mktemp -d /tmp/mpmux-bench-store-XXXXXX)
azurite_state=$work/azurite
cleanup() {
  "$here/../../scripts/stop-azurite.sh" "$azurite_state" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
samples=$work/samples.tsv

echo "1/3 file:// claims, 2 claimants, batches of 1, $file_batches batches" >&2
for rep in $(seq "$reps"); do
  for mode in "O_EXCL:" "link():link" "O_EXCL, no fsync:nosync" "link(), no fsync:link nosync"; do
    name=${mode%%:*}
    args=${mode#*:}
    store=$work/store-$rep-${args// /-}
    # shellcheck disable=SC2086  # the mode's words
    rate=$("$bench" "$store" 2 "$file_batches" 1 $args | sed -n 's/^claims_per_s=\([0-9.]*\).*/\1/p')
    printf 'file:// %s, 2 claimants\tclaims/s\t%s\n' "$name" "$rate" >>"$samples"
  done
done

if [ "${SKIP_AZURITE:-0}" != 1 ]; then
  echo "2/3 Azurite claims, 2 claimants, batches of 1, 16, 256" >&2
  endpoint=$("$here/../../scripts/start-azurite.sh" "$azurite_state")
  export AZURE_STORAGE_BLOB_ENDPOINT=$endpoint
  # Azurite's well-known development key (its README), for this emulator only.
  export AZURE_STORAGE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
  unset AZURE_STORAGE_CONNECTION_STRING
  n=0
  for _ in $(seq "$reps"); do
    for size in 1 16 256; do
      n=$((n + 1))
      container=bench$n-$RANDOM
      rate=$("$bench" "az://devstoreaccount1/$container/s" 2 "$az_batches" "$size" create |
        sed -n 's/^claims_per_s=\([0-9.]*\).*/\1/p')
      printf 'az:// Azurite, 2 claimants, batch %s\tclaims/s\t%s\n' "$size" "$rate" >>"$samples"
      awk -v r="$rate" -v s="$size" 'BEGIN { printf "az:// Azurite, 2 claimants, batch %s\tus/element\t%.2f\n", s, 1e6 / (r * s) }' >>"$samples"
    done
  done
fi

elements=${CROSSJOB_ELEMENTS:-100000}
echo "3/3 cross-job: $elements elements of 1 ms, mpirun -n 3 (2 workers): two jobs on sessions of their own vs on one" >&2
mpmux=$build/bin/mpmux
plugin=$build/bench/store/libbench_sleep_task.so
[ -e "$plugin" ] || { echo "bench/store: $plugin is missing: build the target bench_sleep_task" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
now() { date +%s.%N; }
# timed_job MUX_ID SECONDS_FILE: one job; the file gets its wall time.
timed_job() {
  local t0
  t0=$(now)
  mpirun --oversubscribe -n 3 "$mpmux" run "$1" --plugin "$plugin" --threads 1 --progress none 2>>"$work/jobs.err" >/dev/null
  awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.6f", b - a }' >"$2"
}
per_worker() { awk -v n="$1" -v t="$2" -v w="$3" 'BEGIN { printf "%.1f", n / t / w }'; }
mux=$("$mpmux" new "$work/mux" --range "$elements")
# The jobs on sessions of their own each do half as many elements, as each of two jobs sharing a
# session does: both sides last as long, so their start and end weigh the same.
half=$((elements / 2))
half_mux=$("$mpmux" new "$work/mux" --range "$half" --tag half)
for _ in $(seq "$reps"); do
  a=$("$mpmux" session "$half_mux")
  b=$("$mpmux" session "$half_mux")
  timed_job "$a" "$work/t.a" &
  first=$!
  timed_job "$b" "$work/t.b"
  wait "$first"
  # Each job did its whole session: elements/s per worker of each, averaged.
  apart=$(awk -v n="$half" -v a="$(cat "$work/t.a")" -v b="$(cat "$work/t.b")" \
    'BEGIN { printf "%.1f", (n / a + n / b) / 4 }')
  shared=$("$mpmux" session "$mux")
  t0=$(now)
  timed_job "$shared" "$work/t.a" &
  first=$!
  timed_job "$shared" "$work/t.b"
  wait "$first"
  together=$(per_worker "$elements" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }')" 4)
  "$mpmux" done "$shared" >/dev/null || { echo "bench/store: the two jobs left the session unfinished" >&2; exit 1; }
  alone_id=$("$mpmux" session "$mux")
  timed_job "$alone_id" "$work/t.a"
  alone=$(per_worker "$elements" "$(cat "$work/t.a")" 2)
  printf 'cross-job, two jobs on sessions of their own, per worker\telements/s\t%s\n' "$apart" >>"$samples"
  printf 'cross-job, two jobs on one session, per worker\telements/s\t%s\n' "$together" >>"$samples"
  printf 'cross-job, one job alone, per worker\telements/s\t%s\n' "$alone" >>"$samples"
  awk -v a="$apart" -v t="$together" 'BEGIN { printf "cross-job overhead\tratio\t%.3f\n", a / t }' >>"$samples"
  awk -v a="$alone" -v t="$together" 'BEGIN { printf "cross-job vs alone\tratio\t%.3f\n", a / t }' >>"$samples"
done

/usr/bin/python3 "$here/../claim/table.py" <"$samples"
median() { grep -F "$1"$'\t'"$2" "$samples" | cut -f3 | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'file_claims_per_s=%.0f\n' "$(median 'file:// O_EXCL, no fsync, 2 claimants' claims/s)"
printf 'file_claims_per_s_fsync=%.0f\n' "$(median 'file:// O_EXCL, 2 claimants' claims/s)"
if [ "${SKIP_AZURITE:-0}" != 1 ]; then
  for size in 1 16 256; do
    printf 'azurite_claims_per_s_batch_%s=%.0f\n' "$size" "$(median "az:// Azurite, 2 claimants, batch $size" claims/s)"
  done
fi
printf 'crossjob_overhead_ratio=%.3f\n' "$(median 'cross-job overhead' ratio)"
printf 'crossjob_vs_alone_ratio=%.3f\n' "$(median 'cross-job vs alone' ratio)"
