#!/usr/bin/env bash
# Builds and runs tests under a sanitizer, in a build folder of its own:
#   scripts/sanitize.sh address [BUILD_DIR]  unit and MPI tests under ASan+UBSan (build-asan)
#   scripts/sanitize.sh thread  [BUILD_DIR]  the pool and run layers' tests under TSan (build-tsan)
# Only the targets those tests need are built. Open MPI's own leaks and races are suppressed by
# tests/sanitizers/*.supp; nothing of mpmux is.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: scripts/sanitize.sh address|thread [BUILD_DIR]}
src=$PWD
supp=$src/tests/sanitizers

unit_targets() { for f in "$@"; do n=$(basename "$f" _test.cpp); echo "unit_$n"; done; }
case $kind in
  address)
    build=${2:-build-asan}
    flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    targets=($(unit_targets tests/unit/*_test.cpp) $(for f in tests/mpi/*_test.cpp; do echo "mpi_$(basename "$f" _test.cpp)"; done))
    skip='^(integration|doc)_'
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0"
    export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
    ;;
  thread)
    build=${2:-build-tsan}
    flags="-fsanitize=thread -fno-omit-frame-pointer"
    # The pool layer (thread and process pools, worker programs) and the run layer (commands,
    # deadlines, plugins run by threads).
    targets=($(unit_targets tests/unit/{thread_pool,process_pool,pool_affinity,pool_growth,worker_program,command,deadline,plugin}_test.cpp) mpi_multiplexer)
    skip='^(integration|doc)_|^mpi_rma_claimer'
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"
    ;;
  *) echo "scripts/sanitize.sh: unknown sanitizer '$kind' (address or thread)" >&2; exit 2 ;;
esac

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPMUX_BENCHMARKS=OFF "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Tests of targets not built here (integration, docs, other units) are left out.
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" -E "$skip|_NOT_BUILT\$"
