#!/usr/bin/env bash
# Configures and builds mpmux into ${MPMUX_BUILD_DIR:-build}, through ccache when it is installed
# (paths relative to the clone, so that a clone in another directory hits the same entries).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MPMUX_BUILD_DIR:-build}
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
