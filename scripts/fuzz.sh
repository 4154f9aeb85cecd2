#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang into BUILD_DIR and runs each for SECONDS:
#   scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]
# Each target starts from its checked-in corpus (tests/fuzz/corpus/<target>/, read only) and
# keeps what it learns in BUILD_DIR/corpus/<target>/. A crash leaves its input in
# BUILD_DIR/crashes/ and fails the script. Prints one line of executions per target. The targets
# run one per core at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: scripts/fuzz.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
src=$PWD

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  # Paths relative to the clone, so that a clone in another directory hits the same entries.
  export CCACHE_BASEDIR=$src CCACHE_NOHASHDIR=1
fi
cmake -S tests/fuzz -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "${launcher[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/*_fuzz.cpp; do targets+=("$(basename "$f" _fuzz.cpp)"); done
fi
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
mkdir -p "$build/crashes"

# Runs one target and prints its line; fails when it crashed.
fuzz_one() {
  local t=$1 log="$build/fuzz_$1.log" status=0 runs
  mkdir -p "$build/corpus/$t"
  # -jobs/-workers 1: one process per target; the targets run one per core (below).
  "$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$build/crashes/$t-" \
    "$build/corpus/$t" "$src/tests/fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$status" -ne 0 ]; then
    echo "fuzz $t: FAILED after ${runs:-?} executions (exit $status); log $log:"
    grep -E "ERROR|SUMMARY|==[0-9]+==|runtime error|Test unit written" "$log" | head -20
    return 1
  fi
  echo "fuzz $t: ${runs:-?} executions in ${seconds} s, no crash"
}

# As many targets at once as there are cores, each still for SECONDS.
failed=0
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$(nproc)" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit $failed
