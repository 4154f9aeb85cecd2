#!/usr/bin/env bash
# bench/scale/run.sh BUILD_DIR: the scale model (scale_model.py, a discrete-event simulation of one
# session) calibrated with the benchmarks' figures, its predictions for 1k, 10k and 100k ranks and
# tasks of 10 ms to 1 h, and its check against this machine at 2, 3 and 4 ranks (check.py).
# Environment:
#   SCALE_CALIBRATION: a file of name=value lines (the output of the benchmark drivers:
#     bench/claim, bench/overhead, bench/io, bench/store); names it lacks take the defaults recorded
#     in scale_model.py. Default: none, every figure a default.
#   MPMUX_BENCH_OUT: writes scale.md and scale.svg there; without it the table goes to stdout.
#   SKIP_CHECK=1: no runs on this machine (the model alone).
# Ends with name=value lines: scale_check_max_error=, scale_check_within_20pct=,
# scale_coordinator_limit_task_ms_{1k,10k,100k}=, scale_root_load_100k_*=, scale_imbalance_*=.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-${MPMUX_BUILD_DIR:-$here/../../build}}
work=$(mktemp -d /tmp/mpmux-bench-scale-XXXXXX)
trap 'rm -rf "$work"' EXIT
calibration=$work/calibration.txt
if [ -n "${SCALE_CALIBRATION:-}" ]; then cp "$SCALE_CALIBRATION" "$calibration"; else : >"$calibration"; fi
check=-
if [ "${SKIP_CHECK:-0}" != 1 ]; then
  echo "1/2 check: mpmux run --plugin (sleep task) at 2, 3 and 4 ranks against the model" >&2
  check=$work/check.txt
  /usr/bin/python3 "$here/check.py" "$build" "$calibration" | tee "$check"
fi
echo "2/2 predictions: 1k, 10k, 100k ranks" >&2
/usr/bin/python3 "$here/report.py" "$calibration" "$check" "${MPMUX_BENCH_OUT:-}"
