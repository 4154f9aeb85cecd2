#!/usr/bin/env bash
# Starts Azurite's Blob service (the Azure Storage emulator) for the az:// tests and benchmarks:
# installs the pinned version from npm into the project's .azurite/ when missing, then starts it on
# 127.0.0.1 at a free port with a temporary --location and --disableTelemetry (without it Azurite
# tries to reach the network and logs errors), and waits until it answers.
#
#   scripts/start-azurite.sh STATE_DIR    writes STATE_DIR/{pid,port,endpoint,log}, prints the endpoint
#   scripts/stop-azurite.sh STATE_DIR     stops it by its pid and removes its data
#
# The endpoint is path-style, as AZURE_STORAGE_BLOB_ENDPOINT takes it:
# http://127.0.0.1:PORT/devstoreaccount1 (the account and key are Azurite's well-known ones).
set -euo pipefail

version=3.35.0
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${MPMUX_AZURITE_PREFIX:-$here/.azurite}
timeout_s=${MPMUX_AZURITE_TIMEOUT:-60}

die() {
  echo "start-azurite: $*" >&2
  exit 1
}

[ $# -eq 1 ] || die "usage: start-azurite.sh STATE_DIR"
state=$1
mkdir -p "$state"
state=$(cd "$state" && pwd)

command -v node >/dev/null || die "node not found; run scripts/install-deps.sh first"
command -v npm >/dev/null || die "npm not found; run scripts/install-deps.sh first"

bin=$prefix/node_modules/.bin/azurite-blob
installed=$(node -p "require('$prefix/node_modules/azurite/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$version" ]; then
  echo "start-azurite: installing azurite@$version into $prefix" >&2
  mkdir -p "$prefix"
  # A lock of its own, so that concurrent fixtures (two build trees) do not install over each other.
  (
    flock 9
    installed=$(node -p "require('$prefix/node_modules/azurite/package.json').version" 2>/dev/null || true)
    if [ "$installed" != "$version" ]; then
      npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "azurite@$version" >&2 ||
        die "npm install azurite@$version failed"
    fi
  ) 9>"$prefix/.install.lock"
fi
[ -x "$bin" ] || die "$bin missing after the install"

# One started from this state folder before and never stopped (an interrupted ctest) is ours: stop it.
"$here/scripts/stop-azurite.sh" "$state"

port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d "$state/data.XXXXXX")
# setsid: its own process group, so that the stop reaches node's children too.
setsid "$bin" --blobHost 127.0.0.1 --blobPort "$port" --location "$data" --disableTelemetry --silent \
  >"$state/log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$state/pid"
echo "$port" >"$state/port"
echo "$data" >"$state/data"

endpoint=http://127.0.0.1:$port/devstoreaccount1
deadline=$((SECONDS + timeout_s))
# Any HTTP answer (an unsigned request gets 403) means the service is up.
until curl -s -o /dev/null -m 2 "$endpoint?comp=list"; do
  kill -0 "$pid" 2>/dev/null || die "azurite exited at start: $(tail -n 5 "$state/log")"
  [ $SECONDS -lt $deadline ] || {
    kill -- -"$pid" 2>/dev/null || true
    die "azurite did not answer on port $port within ${timeout_s} s"
  }
  sleep 0.2
done
echo "$endpoint" >"$state/endpoint"
echo "$endpoint"
