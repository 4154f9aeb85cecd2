#!/bin/bash
# Works through a session with a chain of Slurm jobs, one after the other, until it is done: for
# sessions longer than the time limit a partition allows. Each job of the chain runs `mpmux run`;
# when it starts and the session is not done, it submits its successor with
# --dependency=afterany:<itself>, so the next job starts as soon as this one ends, however it
# ends (a drain at the time limit exits 75, a node failure, a scancel). A job that finds the
# session done ends at once and cancels its pending successor, which ends the chain.
#
#   slurm/chain.sh "$MUX_ID" --ntasks=65 --time=04:00:00 -- --exec './sim {alpha} {seed}'
#
# The options before `--` go to sbatch, the ones after it to `mpmux run`. Prints the first job's
# id. Environment: MPMUX, the mpmux program (default: mpmux on PATH); MPMUX_LAUNCHER, srun
# (default: `srun --mpi=pmix`) or mpirun; MPMUX_CHAIN_MAX (default 20) bounds the jobs of one
# chain, so that a session that never gets done does not loop forever.
set -u

usage() {
  echo "usage: slurm/chain.sh MUX_ID [SBATCH OPTIONS] -- [MPMUX RUN OPTIONS]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
mux_id=$1
shift
sbatch_opts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  sbatch_opts+=("$1")
  shift
done
[ $# -gt 0 ] || usage
shift
run_opts=("$@")
mpmux=${MPMUX:-mpmux}
max=${MPMUX_CHAIN_MAX:-20}
case $max in '' | *[!0-9]*) echo "chain.sh: MPMUX_CHAIN_MAX='$max': expected a number" >&2; exit 2 ;; esac

# submit LINK [DEPENDENCY]: submits link LINK of the chain; prints its job id.
submit() {
  local dep=()
  [ $# -lt 2 ] || dep=("--dependency=afterany:$2")
  MPMUX_CHAIN_SCRIPT=$script MPMUX_CHAIN_LINK=$1 sbatch --parsable --job-name=mpmux-chain \
    --export=ALL "${dep[@]}" "${sbatch_opts[@]}" "$script" "$mux_id" "${sbatch_opts[@]}" -- "${run_opts[@]}" |
    cut -d';' -f1
}

if [ -z "${MPMUX_CHAIN_LINK:-}" ] || [ -z "${SLURM_JOB_ID:-}" ]; then
  # On the login node: check the session, then submit the first link.
  script=$(readlink -f "$0")
  "$mpmux" stat "$mux_id" >/dev/null || exit 2
  if "$mpmux" done "$mux_id" >/dev/null 2>&1; then
    echo "chain.sh: the session is done already; nothing submitted" >&2
    exit 0
  fi
  job=$(submit 1) || exit 1
  [ -n "$job" ] || exit 1
  echo "$job"
  exit 0
fi

# A link of the chain, inside its job.
script=$MPMUX_CHAIN_SCRIPT
link=$MPMUX_CHAIN_LINK
echo "mpmux chain: job $SLURM_JOB_ID, link $link of at most $max, on $(hostname -s) at $(date -Is)"
if "$mpmux" done "$mux_id" >/dev/null 2>&1; then
  echo "mpmux chain: the session is done; the chain ends"
  exit 0
fi
next=
if [ "$link" -lt "$max" ]; then
  next=$(submit $((link + 1)) "$SLURM_JOB_ID")
  echo "mpmux chain: job $next follows this one"
else
  echo "mpmux chain: link $max is the last (MPMUX_CHAIN_MAX)"
fi
case ${MPMUX_LAUNCHER:-srun} in
  srun) launch=(srun --mpi=pmix) ;;
  mpirun) launch=(mpirun) ;;
  *)
    echo "chain.sh: MPMUX_LAUNCHER='${MPMUX_LAUNCHER}': expected srun or mpirun" >&2
    exit 2
    ;;
esac

"${launch[@]}" "$mpmux" run "$mux_id" "${run_opts[@]}" </dev/null
code=$?
echo "mpmux run: exit $code"
"$mpmux" stat "$mux_id"
if [ -n "$next" ] && "$mpmux" done "$mux_id" >/dev/null 2>&1; then
  scancel "$next" && echo "mpmux chain: the session is done; job $next cancelled"
fi
exit "$code"
