#!/usr/bin/env bash
# Configures and builds mpmux into ${MPMUX_BUILD_DIR:-build}.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MPMUX_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"
