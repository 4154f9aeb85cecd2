#!/usr/bin/env bash
# bench/store/run.sh BUILD_DIR: batch claims per second through the object store (each a claim
# and its done commit, no work in between), measured in this one run on this machine:
#   1. file:// on local disk, 2 claimant processes, batches of 1: O_EXCL and link(), with and
#      without fsync (the store's default syncs each object and its folder);
#   2. Azurite (az://, path-style on 127.0.0.1), 2 claimants, batches of 1, 16 and 256, with the
#      overhead per element.
# Ends with file_claims_per_s= (O_EXCL, no fsync, median) and azurite_claims_per_s_batch_N=.
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

echo "1/2 file:// claims, 2 claimants, batches of 1, $file_batches batches" >&2
for _ in $(seq "$reps"); do
  for mode in "O_EXCL:" "link():link" "O_EXCL, no fsync:nosync" "link(), no fsync:link nosync"; do
    name=${mode%%:*}
    args=${mode#*:}
    rm -rf "$work/store"
    # shellcheck disable=SC2086  # the mode's words
    rate=$("$bench" "$work/store" 2 "$file_batches" 1 $args | sed -n 's/^claims_per_s=\([0-9.]*\).*/\1/p')
    printf 'file:// %s, 2 claimants\tclaims/s\t%s\n' "$name" "$rate" >>"$samples"
  done
done

echo "2/2 Azurite claims, 2 claimants, batches of 1, 16, 256" >&2
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

/usr/bin/python3 "$here/../claim/table.py" <"$samples"
median() { grep -F "$1"$'\t'"$2" "$samples" | cut -f3 | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'file_claims_per_s=%.0f\n' "$(median 'file:// O_EXCL, no fsync, 2 claimants' claims/s)"
printf 'file_claims_per_s_fsync=%.0f\n' "$(median 'file:// O_EXCL, 2 claimants' claims/s)"
for size in 1 16 256; do
  printf 'azurite_claims_per_s_batch_%s=%.0f\n' "$size" "$(median "az:// Azurite, 2 claimants, batch $size" claims/s)"
done
