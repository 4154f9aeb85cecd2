#!/usr/bin/env bash
# Brings up a real one-node Slurm cluster on this machine for the tests and the slurm/ batch
# templates: munged, slurmctld and slurmd started by hand (no systemd), one node named after
# `hostname -s` with the real CPU count and memory, one partition `debug`. Idempotent: what
# already runs is left running. Installs nothing (scripts/install-deps.sh does); run as root.
# The config goes to $SLURM_CONF (default /etc/slurm/slurm.conf); a config this script did not
# write is never overwritten: the cluster it describes is only checked.
# MPMUX_SPANK_PLUGIN=BUILD/plugins/slurm/mpmux_spank.so installs mpmux's SPANK plugin (--mux for
# sbatch, salloc and srun) through a drop-in CONFDIR/plugstack.conf.d/mpmux.conf, with MPMUX (the
# mpmux program, default: mpmux on PATH) as the program that checks a --mux id.
set -euo pipefail

conf=${SLURM_CONF:-/etc/slurm/slurm.conf}
export SLURM_CONF=$conf
timeout_s=${MPMUX_SLURM_TIMEOUT:-60}
marker="# Written by mpmux scripts/start-slurm.sh: a one-node cluster for tests; it rewrites this file."
state=/var/spool/mpmux-slurm
logs=/var/log/mpmux-slurm

die() {
  echo "start-slurm: $*" >&2
  exit 1
}

for tool in munged munge slurmctld slurmd sinfo scontrol; do
  command -v "$tool" >/dev/null || die "$tool not found; run scripts/install-deps.sh first"
done
[ "$(id -u)" -eq 0 ] || die "must run as root (it starts munged, slurmctld and slurmd)"

node=$(hostname -s)
ours=1
if [ -e "$conf" ] && ! grep -qxF "$marker" "$conf"; then
  ours=0
fi

# ----- munge: the key, then the daemon -----
if [ ! -s /etc/munge/munge.key ]; then
  install -d -o munge -g munge -m 0700 /etc/munge
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile=/etc/munge/munge.key
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  # A stale socket or pid file left by a killed munged makes the new one refuse to start.
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid
  runuser -u munge -- munged || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
  munge -n | unmunge >/dev/null || die "munged runs but a credential does not round-trip"
fi

# ----- slurm.conf -----
restart=0
if [ "$ours" -eq 1 ]; then
  # slurmd -C prints this node's real layout; UpTime is not a config key.
  hw=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ *UpTime=.*//')
  [ -n "$hw" ] || die "slurmd -C printed nothing"
  install -d -m 0755 "$(dirname "$conf")" "$state/ctld" "$state/d" "$logs"
  new=$(mktemp)
  # The loopback address keeps the cluster working when `hostname -s` does not resolve.
  cat >"$new" <<EOF
$marker
ClusterName=mpmux
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/mpmux-slurmctld.pid
SlurmdPidFile=/run/mpmux-slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# A test cluster: schedule within seconds, and let a requeued job start again after 10 s (the
# default credential lifetime, 120 s, is also the wait of a requeued job).
SchedulerParameters=sched_interval=2,bf_interval=2
AuthInfo=cred_expire=10
InactiveLimit=0
KillWait=30
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  if ! cmp -s "$new" "$conf"; then
    mv "$new" "$conf"
    chmod 0644 "$conf"
    restart=1
  else
    rm -f "$new"
  fi
fi

# ----- the SPANK plugin: plugstack.conf includes plugstack.conf.d/*.conf, which holds ours -----
# sbatch, salloc, srun and slurmstepd read the plugin stack each time they start: nothing to restart.
plugin=${MPMUX_SPANK_PLUGIN:-}
if [ -n "$plugin" ] && [ "$ours" -eq 0 ]; then
  echo "start-slurm: $conf was not written by this script: the SPANK plugin is not installed" \
    "(add 'optional $plugin' to its plugstack.conf)" >&2
elif [ -n "$plugin" ]; then
  plugin=$(readlink -f "$plugin") || die "MPMUX_SPANK_PLUGIN='$MPMUX_SPANK_PLUGIN' does not exist"
  [ -r "$plugin" ] || die "MPMUX_SPANK_PLUGIN='$plugin' is not a readable file"
  program=${MPMUX:-$(command -v mpmux || true)}
  args=()
  if [ -n "$program" ]; then
    program=$(command -v "$program") && program=$(readlink -f "$program") ||
      die "MPMUX='$MPMUX' is not a program"
    args=("mpmux=$program")
  fi
  # plugstack.conf splits a line at blanks: a path with one cannot be written there.
  for path in "$plugin" "$program"; do
    case $path in *[[:space:]]*) die "'$path' holds a blank, which a plugstack.conf line cannot hold" ;; esac
  done
  confdir=$(dirname "$conf")
  dropdir=$confdir/plugstack.conf.d
  plugstack=$confdir/plugstack.conf
  install -d -m 0755 "$dropdir"
  if ! grep -qsF "include $dropdir/*" "$plugstack"; then
    echo "include $dropdir/*.conf" >>"$plugstack"
    chmod 0644 "$plugstack"
  fi
  dropin_marker="# Written by mpmux scripts/start-slurm.sh: the mpmux SPANK plugin (--mux); it rewrites this file."
  new=$(mktemp)
  # optional: with the plugin file gone (a removed build tree), srun and sbatch still work, without --mux.
  printf '%s\noptional %s\n' "$dropin_marker" "$plugin${args[*]:+ ${args[*]}}" >"$new"
  if cmp -s "$new" "$dropdir/mpmux.conf"; then
    rm -f "$new"
  else
    chmod 0644 "$new"
    mv "$new" "$dropdir/mpmux.conf"
  fi
fi

# A drop-in of ours whose plugin file is gone (a removed build tree) only makes every srun and
# sbatch print two error lines: without a plugin to install, it goes.
dropin=$(dirname "$conf")/plugstack.conf.d/mpmux.conf
if [ -z "$plugin" ] && [ -f "$dropin" ] && grep -q '^# Written by mpmux scripts/start-slurm.sh' "$dropin"; then
  stale=$(awk '$1 == "optional" { print $2 }' "$dropin")
  [ -e "$stale" ] || rm -f "$dropin"
fi

# alive PIDFILE NAME: the daemon of that pid file runs (a pid reused by another program is not it).
alive() { [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]; }
ctld_pid=/run/mpmux-slurmctld.pid
d_pid=/run/mpmux-slurmd.pid

if [ "$ours" -eq 1 ]; then
  if [ "$restart" -eq 1 ]; then
    # A changed config (new machine size, first run): daemons of the old one must go.
    for daemon in slurmd slurmctld; do
      f=/run/mpmux-$daemon.pid
      if alive "$f" "$daemon"; then
        pid=$(cat "$f")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
    done
  fi
  if ! alive "$ctld_pid" slurmctld; then
    # The jobs saved under another config (another node name or size) are test jobs: drop them.
    clear=()
    [ "$restart" -eq 0 ] || clear=(-c)
    slurmctld "${clear[@]}" || die "slurmctld did not start (see $logs/slurmctld.log)"
  fi
  if ! alive "$d_pid" slurmd; then
    slurmd || die "slurmd did not start (see $logs/slurmd.log)"
  fi
fi

# ----- wait until the node takes jobs -----
end=$((SECONDS + timeout_s))
resumed=0
node_state=""
while :; do
  node_state=$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n1 || true)
  case "$node_state" in
    idle | mixed | allocated | completing) break ;;
    down* | drain* | fail*)
      if [ "$resumed" -eq 0 ]; then
        scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
        resumed=1
      fi
      ;;
  esac
  if [ "$SECONDS" -ge "$end" ]; then
    reason=$(sinfo -h -n "$node" -o '%T %E' 2>&1 | head -n1 || true)
    die "node $node not ready within ${timeout_s} s (sinfo: '${reason:-no answer}'); see $logs/"
  fi
  sleep 0.5
done

version=$(sinfo --version | awk '{print $2}')
info=$(sinfo -h -n "$node" -o '%c CPUs, %m MB' | head -n1)
spank=""
[ -z "$plugin" ] || [ "$ours" -eq 0 ] || spank=", SPANK plugin $plugin"
echo "start-slurm: Slurm $version up, node $node ($info) $node_state in partition debug, conf $conf$spank"
