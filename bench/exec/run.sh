#!/usr/bin/env bash
# bench/exec/run.sh [BUILD_DIR]: what `mpmux run --exec true` costs per element (wall time over
# the elements, mpirun's start included) with 2 workers (mpirun -n 3: rank 0 coordinates),
# against, on the same elements in the same run:
#   - its floor: a C loop of posix_spawn + waitpid keeping 2 children running (bench_exec_spawn_floor);
#   - GNU parallel's per job, `parallel -j 2 true`;
#   - a Slurm job array on the local cluster, one `true` per array task (`sbatch --array --wait`),
#     over fewer elements (SLURM_TASKS, 100): skipped, and said so, when no cluster answers.
# Environment: REPS (3), N_EXEC (6000), SLURM_TASKS (100). Needs the targets mpmux and
# bench_exec_spawn_floor. Ends with exec_vs_spawn_floor_ratio= (target <= 1.3),
# exec_vs_gnu_parallel_ratio= (target <= 0.2) and exec_vs_slurm_array_ratio= (nan without Slurm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-${MPMUX_BUILD_DIR:-$here/../../build}}" && pwd)
reps=${REPS:-3}
n_exec=${N_EXEC:-6000}  # start-up (about 0.4 s for mpirun, 0.15 s for parallel) is amortized over the run
slurm_tasks=${SLURM_TASKS:-100}
mpmux=$build/bin/mpmux
floor=$build/bench/exec/bench_exec_spawn_floor
for f in "$mpmux" "$floor"; do
  [ -x "$f" ] || { echo "bench/exec: $f is missing: build it first" >&2; exit 2; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d /tmp/mpmux-bench-exec-XXXXXX)
trap 'rm -rf "$work"' EXIT
samples=$work/samples.tsv
group="true per element, 2 workers"
sample() { printf '%s\t%s\tus/element\t%s\n' "$group" "$1" "$2" >>"$samples"; }
now_ns() { date +%s%N; }

slurm=""
if ! command -v sbatch >/dev/null; then
  slurm="sbatch not installed"
elif ! sinfo -h -o %a 2>/dev/null | grep -q up; then
  slurm="no Slurm cluster answers (sinfo)"
fi
[ -n "$slurm" ] && echo "bench/exec: Slurm job array skipped: $slurm" >&2

echo "--exec true per element, 2 workers, $n_exec elements, $reps repetitions" >&2
mux_dir=$("$mpmux" new "$work/mux" --range "$n_exec")
for _ in $(seq "$reps"); do
  id=$("$mpmux" session "$mux_dir")
  t0=$(now_ns)
  mpirun --oversubscribe -n 3 "$mpmux" run "$id" --exec true --no-progress
  t1=$(now_ns)
  "$mpmux" done "$id" >/dev/null || { echo "bench/exec: mpmux run left elements undone" >&2; exit 1; }
  rm -rf "$mux_dir/sessions/${id#*#s=}"
  sample "mpmux run --exec true (mpirun -n 3)" $(((t1 - t0) / 1000 / n_exec))

  s=$("$floor" "$n_exec" 2 true | sed -n 's/^spawn_floor_s=\([0-9.]*\) .*/\1/p')
  sample "posix_spawn + waitpid loop, 2 at a time (floor)" "$(awk -v s="$s" -v n="$n_exec" 'BEGIN { printf "%.0f", s * 1e6 / n }')"

  t0=$(now_ns)
  seq "$n_exec" | parallel -j 2 true
  t1=$(now_ns)
  sample "GNU parallel -j 2 true" $(((t1 - t0) / 1000 / n_exec))

  if [ -z "$slurm" ]; then
    t0=$(now_ns)
    if timeout 600 sbatch --parsable --wait --quiet --array="0-$((slurm_tasks - 1))" --ntasks=1 \
      --job-name=mpmux-bench-exec --output=/dev/null --wrap true >"$work/sbatch.out" 2>"$work/sbatch.err"; then
      t1=$(now_ns)
      sample "Slurm job array, $slurm_tasks tasks of one true" $(((t1 - t0) / 1000 / slurm_tasks))
    else
      slurm="sbatch --array failed: $(head -c 300 "$work/sbatch.err" | tr '\n' ' ')"
      echo "bench/exec: Slurm job array skipped from here on: $slurm" >&2
    fi
  fi
done

[ -n "${MPMUX_BENCH_OUT:-}" ] && cp "$samples" "$MPMUX_BENCH_OUT/exec.samples.tsv"
/usr/bin/python3 "$here/../claim/table.py" <"$samples"
median() { grep -F "$1" "$samples" | cut -f4 | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$2" -v b="$3" -v k="$1" -v f="$4" 'BEGIN { if (a == "" || b == "" || b == 0) print k "=nan"; else printf "%s=" f "\n", k, a / b }'; }
mpmux_us=$(median 'mpmux run')
ratio exec_vs_spawn_floor_ratio "$mpmux_us" "$(median 'posix_spawn')" %.3f
ratio exec_vs_gnu_parallel_ratio "$mpmux_us" "$(median 'GNU parallel')" %.3f
ratio exec_vs_slurm_array_ratio "$mpmux_us" "$(median 'Slurm job array')" %.4f
