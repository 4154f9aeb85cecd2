#!/usr/bin/env bash
# clang-tidy (.clang-tidy) on every source of src/, with the headers of src/ and include/, using
# the compile commands of BUILD_DIR (default build, configured by scripts/build.sh). Exits non-zero
# on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-${MPMUX_BUILD_DIR:-build}}
[ -f "$build/compile_commands.json" ] || { echo "lint: no $build/compile_commands.json (run scripts/build.sh)" >&2; exit 2; }
tidy=$(command -v run-clang-tidy-14 || command -v run-clang-tidy)
"$tidy" -p "$build" -j "$(nproc)" -quiet -header-filter="^$PWD/(src|include)/" "^$PWD/src/" >"$build/clang-tidy.log" 2>&1 || true
sed -i "s/\x1b\[[0-9;]*m//g" "$build/clang-tidy.log"  # it colours even into a file
findings=$(grep -cE "^$PWD/.*: (warning|error): " "$build/clang-tidy.log" || true)
if [ "$findings" -ne 0 ] || grep -q "^Error while processing" "$build/clang-tidy.log"; then
  grep -E -A3 "^$PWD/.*: (warning|error): |^Error while processing" "$build/clang-tidy.log"
  echo "lint: $findings clang-tidy findings in src/ and include/ (log: $build/clang-tidy.log)"
  exit 1
fi
echo "lint: clang-tidy clean on src/ and include/ ($(grep -c '"file"' "$build/compile_commands.json") compile commands)"
