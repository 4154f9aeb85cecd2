#!/usr/bin/env bash
# Stops the one-node Slurm cluster that scripts/start-slurm.sh started: slurmd, slurmctld and
# munged, each by the pid file it wrote, so daemons started any other way are left alone. Jobs
# still running are ended with the cluster. `--purge` also removes the config, saved state and logs,
# and the drop-in that installs mpmux's SPANK plugin.
set -euo pipefail

purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  *)
    echo "usage: stop-slurm.sh [--purge]" >&2
    exit 2
    ;;
esac
conf=${SLURM_CONF:-/etc/slurm/slurm.conf}
marker="# Written by mpmux scripts/start-slurm.sh: a one-node cluster for tests; it rewrites this file."

stopped=()
# stop PIDFILE NAME: ends the daemon of that pid file and waits (10 s at most) until it is gone.
stop() {
  local pid
  [ -s "$1" ] || return 0
  pid=$(cat "$1")
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 0
  kill "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "stop-slurm: $2 (pid $pid) still runs 10 s after SIGTERM" >&2
    exit 1
  fi
  stopped+=("$2")
}

stop /run/mpmux-slurmd.pid slurmd
stop /run/mpmux-slurmctld.pid slurmctld
stop /run/munge/munged.pid munged

if [ "$purge" -eq 1 ]; then
  if [ -e "$conf" ] && grep -qxF "$marker" "$conf"; then
    rm -f "$conf"
  fi
  dropin=$(dirname "$conf")/plugstack.conf.d/mpmux.conf
  if [ -e "$dropin" ] && grep -q "^# Written by mpmux scripts/start-slurm.sh" "$dropin"; then
    rm -f "$dropin"
  fi
  rm -rf /var/spool/mpmux-slurm /var/log/mpmux-slurm
fi
what="stopped ${stopped[*]:-nothing (none was running)}"
[ "$purge" -eq 0 ] || what="$what; config, state and logs removed"
echo "stop-slurm: $what"
