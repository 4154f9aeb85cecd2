#!/usr/bin/env bash
# Stops the Azurite that scripts/start-azurite.sh STATE_DIR started (by its pid, with its process
# group) and removes its data. Stopping one that is not running is not an error.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: stop-azurite.sh STATE_DIR" >&2; exit 1; }
state=$1
if [ -s "$state/pid" ]; then
  pid=$(cat "$state/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- -"$pid" 2>/dev/null || true
  fi
fi
if [ -s "$state/data" ]; then rm -rf -- "$(cat "$state/data")"; fi
rm -f "$state/pid" "$state/port" "$state/endpoint" "$state/data"
