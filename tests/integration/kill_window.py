"""The kill-and-rerun loop that measures the kill window (used by test_kill.py and bench/kill/run.sh).

A session of N elements whose task sleeps D seconds is run under `mpirun -n NP`, and the job
(mpirun's process group and every rank) is killed with SIGKILL at random moments, KILLS times, each run started
right after the last one's ranks are gone; then it runs until done. Each task appends to one log,
with O_APPEND writes of one line each, `S <index> <start ns>` when it starts and
`E <index> <start ns> <end ns>` when it ends, so the log tells every execution, also of tasks
that outlived their rank. Per kill it compares the log with the journals: the elements that ended
before the kill and are not done are the kill window's cost."""
import os
import random
import signal
import subprocess
import sys
import time

from mpmuxtest import ENV, MPIEXEC
from test_crash import _processes, descendants, done_records, signal_each

TASK = r"""#!/bin/sh
# kill-window task: $1 log, $2 element index, $3 seconds to sleep
start=$(date +%s%N)
echo "S $2 $start" >> "$1"
sleep "$3"
echo "E $2 $start $(date +%s%N)" >> "$1"
echo "$2"
"""


def read_log(path):
    """(starts, ends): lists of (index, start_ns) and (index, start_ns, end_ns), in log order."""
    starts, ends = [], []
    if not os.path.exists(path):
        return starts, ends
    with open(path) as f:
        for line in f:
            word = line.split()
            if word[:1] == ["S"] and len(word) == 3:
                starts.append((int(word[1]), int(word[2])))
            elif word[:1] == ["E"] and len(word) == 4:
                ends.append((int(word[1]), int(word[2]), int(word[3])))
    return starts, ends


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def processes_running(program):
    """Live processes whose command line names program (the task script under sh)."""
    n = 0
    for pid, (_, state) in _processes().items():
        if state in ("Z", "X"):
            continue
        if program.encode() in cmdline(pid):
            n += 1
    return n


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.005)


def kill_and_rerun(mpmux_bin, workdir, mux_id, n_elements, seconds, kills, seed, np=3, window_s=0.2,
                   moment=(1.0, 4.0), out=sys.stdout):
    """Runs the loop; returns a dict of figures and, per kill, the sets the bound is about:
    'unjournaled' (ended before the killed ranks were gone, not done after it), 'in_window'
    (ended after window_s before the kill signal), 'in_flight' (started, not ended)."""
    script = os.path.join(workdir, "kill-window-task.sh")
    with open(script, "w") as f:
        f.write(TASK)
    os.chmod(script, 0o755)
    log = os.path.join(workdir, "kill-window.log")
    args = [MPIEXEC, "-n", str(np), "--oversubscribe", mpmux_bin, "run", mux_id, "--no-progress",
            "--exec", f"{script} {log} {{#}} {seconds}"]
    rng = random.Random(seed)
    per_kill, runs = [], []
    for k in range(kills):
        t_run = time.time_ns()
        with open(os.path.join(workdir, f"run{k}.out"), "wb") as o:
            job = subprocess.Popen(args, stdout=o, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        try:
            job.wait(timeout=rng.uniform(*moment))
        except subprocess.TimeoutExpired:
            pass
        if job.poll() is not None:
            break  # done before this kill
        ranks = {p for p in descendants(os.getpid()) if cmdline(p)[:1] == [mpmux_bin.encode()]}
        # Open MPI starts each rank in a process group of its own: the job is mpirun's group and
        # every rank, all killed at once, as a lost node would.
        t_kill = time.time_ns()
        os.killpg(job.pid, signal.SIGKILL)
        signal_each(ranks, signal.SIGKILL)
        job.wait()
        # The next run starts once the killed ranks are gone, as a user's re-run would.
        wait_for(lambda: not (ranks & {p for p, (_, s) in _processes().items() if s not in ("Z", "X")}),
                 60, "the killed ranks gone")
        # Tasks may end between the signal and their rank's death; none can after it (the
        # kernel sends the death signal before the rank becomes a zombie).
        t_gone = time.time_ns()
        runs.append((t_run, t_gone))
        done = set(done_records(mux_id))
        starts, ends = read_log(log)
        ended = {i: end for i, start, end in ends if t_run <= start and end <= t_gone}
        started = {i for i, start in starts if t_run <= start <= t_gone}
        unjournaled = {i for i in ended if i not in done}
        in_window = {i for i, end in ended.items() if end > t_kill - window_s * 1e9}
        in_flight = started - set(ended)
        per_kill.append({"unjournaled": unjournaled, "in_window": in_window, "in_flight": in_flight,
                         "done": len(done)})
        print(f"kill {k + 1:2d}: {len(done):4d} done; ended before the kill but not journaled "
              f"{len(unjournaled)}, ended in the last {window_s:g} s {len(in_window)}, "
              f"in flight {len(in_flight)}", file=out, flush=True)
    p = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)
    if p.returncode != 0:
        raise AssertionError(f"the final run exited {p.returncode}: {p.stdout}{p.stderr}")
    # Tasks that outlived their rank end on their own (at most `seconds` later): wait for them.
    wait_for(lambda: processes_running(script) == 0, 60 + seconds, "orphaned tasks ended")
    starts, ends = read_log(log)
    end_counts, start_counts = {}, {}
    for i, _, _ in ends:
        end_counts[i] = end_counts.get(i, 0) + 1
    for i, _ in starts:
        start_counts[i] = start_counts.get(i, 0) + 1
    # Executions that ended after their ranks were gone: orphans that outlived their rank.
    orphan_ends = sum(1 for i, start, end in ends for t_run, t_gone in runs if t_run <= start <= t_gone < end)
    return {
        "kills": len(runs),
        "per_kill": per_kill,
        "ended": end_counts,
        "ended_twice": sum(1 for c in end_counts.values() if c > 1),
        "started_twice": sum(1 for c in start_counts.values() if c > 1),
        "extra_ends": sum(c - 1 for c in end_counts.values()),
        "orphan_ends": orphan_ends,
    }
