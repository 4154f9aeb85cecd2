"""The scale model against this machine: runs `mpmux run --plugin` with the sleep task of
bench/store at 2, 3 and 4 ranks, reads each element's start and end from `mpmux results`, and
compares the run's makespan (first start to last end) with the model's for the same ranks,
elements and task lengths (the mean and spread the journal shows, so that nanosleep's overshoot
on a loaded machine is the task's, not the model's error).

Usage: check.py BUILD_DIR CALIBRATION_FILE   (prints one line per run, then name=value lines)
"""

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime

import scale_model

RANKS = (2, 3, 4)
TASK_MS = (2.0, 20.0)
IDEAL_S = 1.5  # each run lasts about this long
TOLERANCE = 0.20


def seconds(t):
    """A time of `mpmux results` (Unix seconds, or ISO 8601) in Unix seconds."""
    return (
        float(t)
        if isinstance(t, (int, float))
        else datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
    )


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def measure(build, work, ranks, task_ms):
    """Runs one session; returns (elements, makespan_s, mean task s, spread of log task)."""
    mpmux = os.path.join(build, "bin", "mpmux")
    plugin = os.path.join(build, "bench", "store", "libbench_sleep_task.so")
    workers = ranks - 1
    n = max(workers * 4, round(workers * IDEAL_S / (task_ms * 1e-3)))
    mux = run([mpmux, "new", os.path.join(work, f"mux-{ranks}-{task_ms:g}"), "--range", str(n)]).strip()
    mux_id = run([mpmux, "session", mux]).strip()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    run(
        [
            "mpirun",
            "--oversubscribe",
            "-n",
            str(ranks),
            mpmux,
            "run",
            mux_id,
            "--plugin",
            plugin,
            "--plugin-arg",
            f"{task_ms:g}",
            "--no-progress",
        ],
        env=env,
    )
    rows = [
        json.loads(line) for line in run([mpmux, "results", mux_id, "--format", "jsonl"]).splitlines() if line
    ]
    if len(rows) != n or any(r.get("status") != "done" for r in rows):
        raise RuntimeError(f"{ranks} ranks, {task_ms:g} ms: {len(rows)} of {n} elements done")
    starts, ends = [seconds(r["start"]) for r in rows], [seconds(r["end"]) for r in rows]
    durations = [e - s for s, e in zip(starts, ends)]
    makespan = max(ends) - min(starts)
    logs = [math.log(max(d, 1e-9)) for d in durations]
    return n, makespan, statistics.fmean(durations), statistics.pstdev(logs)


def main():
    build, calibration = sys.argv[1], sys.argv[2]
    with open(calibration) as f:
        cal, _ = scale_model.Calibration.from_lines(f)
    errors = []
    with tempfile.TemporaryDirectory(prefix="mpmux-scale-check-") as work:
        for ranks in RANKS:
            for task_ms in TASK_MS:
                n, measured, mean_s, sigma = measure(build, work, ranks, task_ms)
                sc = scale_model.Scenario(
                    ranks=ranks, task_s=mean_s, sigma=sigma, elements=n, sample_ranks=ranks
                )
                predicted = scale_model.simulate(sc, cal).makespan_s
                error = abs(predicted - measured) / measured
                errors.append(error)
                print(
                    f"check ranks={ranks} task_ms={task_ms:g} elements={n} mean_task_ms={mean_s * 1e3:.3f} "
                    f"predicted_s={predicted:.3f} measured_s={measured:.3f} error={error:.3f} "
                    f"within_20pct={'yes' if error <= TOLERANCE else 'no'}"
                )
    print(f"scale_check_max_error={max(errors):.3f}")
    print(f"scale_check_within_20pct={'yes' if max(errors) <= TOLERANCE else 'no'}")


if __name__ == "__main__":
    main()
