#!/usr/bin/env bash
# bench/store/run.sh BUILD_DIR: batch claims per second through the object store (each a claim
# and its done commit, no work in between), measured in this one run on this machine:
#   1. file:// on local disk, 2 claimant processes, batches of 1: O_EXCL and link(), with and
#      without fsync (the store's default syncs each object and its folder);
#   2. Azurite (az://, path-style on 127.0.0.1), 2 claimants, batches of 1, 16 and 256, with the
#      overhead per element;
#   3. what sharing a session costs a job: `mpirun -n 3 mpmux run` (2 workers, one thread each)
#      over a file:// session of 100,000 elements that sleep 1 ms (--plugin bench_sleep_task),
#      alone, then two such jobs at once on another session of the same shape.
# Ends with file_claims_per_s= (O_EXCL, no fsync, median), azurite_claims_per_s_batch_N= and
# crossjob_overhead_ratio=<elements/s per worker of the job alone / of the two jobs together>
# (median of the repetitions; 1.0 when sharing costs nothing).
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
for _ in $(seq "$reps"); do
  for mode in "O_EXCL:" "link():link" "O_EXCL, no fsync:nosync" "link(), no fsync:link nosync"; do
    name=${mode%%:*}
    args=${mode#*:}
    rm -rf "$work/store"
    # shellcheck disable=SC2086  # the mode's words
    rate=$("$bench" "$work/store" 2 "$file_batches" 1 $args | sed -n 's/^claims_per_s=\([0-9.]*\).*/\1/p')
    printf 'file:// claims, batches of 1\tfile:// %s, 2 claimants\tclaims/s\t%s\n' "$name" "$rate" >>"$samples"
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
      printf 'az:// claims\taz:// Azurite, 2 claimants, batch %s\tclaims/s\t%s\n' "$size" "$rate" >>"$samples"
      awk -v r="$rate" -v s="$size" 'BEGIN { printf "az:// overhead per element\taz:// Azurite, 2 claimants, batch %s\tus/element\t%.2f\n", s, 1e6 / (r * s) }' >>"$samples"
    done
  done
fi

elements=${CROSSJOB_ELEMENTS:-100000}
echo "3/3 cross-job: $elements elements of 1 ms, mpirun -n 3 (2 workers), one job alone vs two at once" >&2
mpmux=$build/bin/mpmux
plugin=$build/bench/store/libbench_sleep_task.so
[ -e "$plugin" ] || { echo "bench/store: $plugin is missing: build the target bench_sleep_task" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
job() { mpirun --oversubscribe -n 3 "$mpmux" run "$1" --plugin "$plugin" --threads 1 --progress-interval 600 2>>"$work/jobs.err" >/dev/null; }
now() { date +%s.%N; }
mux=$("$mpmux" new "$work/mux" --range "$elements")
for _ in $(seq "$reps"); do
  id=$("$mpmux" session "$mux")
  t0=$(now)
  job "$id"
  alone=$(awk -v n="$elements" -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", n / (b - a) / 2 }')
  id=$("$mpmux" session "$mux")
  t0=$(now)
  job "$id" &
  first=$!
  job "$id"
  wait "$first"
  together=$(awk -v n="$elements" -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", n / (b - a) / 4 }')
  "$mpmux" done "$id" >/dev/null || { echo "bench/store: the two jobs left the session unfinished" >&2; exit 1; }
  printf 'cross-job, 1 ms elements\tone job alone, per worker (baseline)\telements/s\t%s\n' "$alone" >>"$samples"
  printf 'cross-job, 1 ms elements\ttwo jobs at once, per worker\telements/s\t%s\n' "$together" >>"$samples"
  awk -v a="$alone" -v t="$together" 'BEGIN { printf "cross-job overhead\tone job alone over two at once\tratio\t%.3f\n", a / t }' >>"$samples"
done

[ -n "${MPMUX_BENCH_OUT:-}" ] && cp "$samples" "$MPMUX_BENCH_OUT/store.samples.tsv"
/usr/bin/python3 "$here/../claim/table.py" <"$samples"
median() { grep -F "$1"$'\t'"$2" "$samples" | cut -f4 | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'file_claims_per_s=%.0f\n' "$(median 'file:// O_EXCL, no fsync, 2 claimants' claims/s)"
printf 'file_claims_per_s_fsync=%.0f\n' "$(median 'file:// O_EXCL, 2 claimants' claims/s)"
if [ "${SKIP_AZURITE:-0}" != 1 ]; then
  for size in 1 16 256; do
    printf 'azurite_claims_per_s_batch_%s=%.0f\n' "$size" "$(median "az:// Azurite, 2 claimants, batch $size" claims/s)"
  done
fi
printf 'crossjob_overhead_ratio=%.3f\n' "$(median 'one job alone over two at once' ratio)"
