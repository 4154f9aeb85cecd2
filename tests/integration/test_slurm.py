"""Slurm tests on a real one-node cluster (scripts/start-slurm.sh brings it up; if it cannot, the
tests fail). They submit the batch templates of slurm/ with sbatch:

- A job whose time limit comes before its session is done: mpmux, given no --deadline, reads the
  job's end from Slurm (squeue), starts no element that cannot end before it less --grace, and
  exits 75 before Slurm kills the job, with no element half done; the next job finishes the rest.
- `scancel --signal=USR1` to the job's steps (srun's ranks): the run drains and exits 75; the
  elements running at the signal finish within --grace, none failed, none ran twice.
- `scancel --batch --signal=USR1` to the batch script (what `#SBATCH --signal=B:USR1@N` does):
  the script passes it to the ranks, which drain; the script requeues the job, whose next run
  finishes the session; each element ran exactly once across the runs.
- slurm/array.sbatch: the tasks of a job array run at once as participants of one session; each
  element runs once, and more than one task did some.
- slurm/chain.sh: jobs that each stop before their time limit follow one another (afterany)
  until the session is done; the chain then ends by itself.
"""
import os
import re
import time
import unittest

from mpmuxtest import ENV, MPMUX, mpmux
from slurmtest import FINAL, SOURCE, SlurmClusterTest, job_info, run

STOPPED = 75


def local_time(text):
    """Seconds since the epoch of Slurm's local 'YYYY-MM-DDTHH:MM:SS'."""
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def time_limit_s(text):
    """Slurm's [D-]HH:MM:SS or MM:SS as seconds."""
    days, _, hms = text.rpartition("-")
    parts = [int(x) for x in hms.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return (int(days or 0) * 24 + parts[0]) * 3600 + parts[1] * 60 + parts[2]


def log_entries(path):
    """Lines 'INDEX [UNIX_TIME]' that tasks appended: [(index, time or None)]."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            fields = line.split()
            if fields:
                out.append((int(fields[0]), float(fields[1]) if len(fields) > 1 else None))
    return out


def twice(entries):
    seen, dup = set(), []
    for i, _ in entries:
        if i in seen:
            dup.append(i)
        seen.add(i)
    return dup


class SlurmTest(SlurmClusterTest):
    def setUp(self):
        super().setUp()
        self.log = os.path.join(self.tmp, "tasks.log")

    def sbatch(self, template, mux_id, *run_args, time_limit, launcher="srun", options=()):
        """Submits slurm/TEMPLATE for the session with 2 tasks; returns (job id, output file)."""
        out = os.path.join(self.tmp, "job-%j.out")
        cmd = ["sbatch", "--parsable", "--ntasks=2", f"--time={time_limit}", f"--output={out}",
               f"--chdir={self.tmp}", *options, os.path.join(SOURCE, "slurm", template), mux_id,
               *map(str, run_args)]
        p = run(*cmd, env=dict(ENV, MPMUX=MPMUX, MPMUX_LAUNCHER=launcher))
        self.assertEqual(p.returncode, 0, f"{' '.join(cmd)}\n{p.stderr}")
        job = p.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job, out.replace("%j", job)

    def wait_for_lines(self, path, n, job, out, timeout=60):
        """Waits until tasks have written n lines to path (the ranks then have their signal handlers)."""
        end = time.monotonic() + timeout
        while len(log_entries(path)) < n:
            if job_info(job).get("JobState") in FINAL:
                raise AssertionError(f"job {job} ended before {n} tasks ran\n{self.output(out)}")
            if time.monotonic() > end:
                raise AssertionError(f"job {job}: {n} tasks not run within {timeout} s\n{self.output(out)}")
            time.sleep(0.1)

    def assertResumable(self, mux_id, out_text):
        """After a stop: nothing failed or half done, and the stop message's count is the session's."""
        st = self.stat(mux_id)
        self.assertEqual((st["failed"], st["running"]), (0, 0), f"{st}\n{out_text}")
        self.assertEqual(st["done"] + st["pending"], st["total"], st)
        entries = log_entries(self.log)
        self.assertEqual(twice(entries), [], "elements ran twice")
        self.assertEqual(len(entries), st["done"],
                         "a task ran to its end but is not journaled done, or the reverse")
        m = re.search(r"(?m)^mpmux: stopped \((.+)\): (\d+) of (\d+) elements done", out_text)
        self.assertIsNotNone(m, out_text)
        self.assertEqual((int(m.group(2)), int(m.group(3))), (st["done"], st["total"]), out_text)
        return m.group(1), st

    def test_job_stops_before_its_time_limit_and_the_next_job_finishes(self):
        # 2 ranks that both work, 1 s per element: the 60 s of --time=1 hold at most ~110 elements.
        n = 130
        grace, estimate = 5, 1
        _, mux_id = self.new_session("--range", n)
        task = f"sh -c 'sleep 1; echo {{#}} $(date +%s.%N) >> {self.log}'"
        args = ["--exec", task, "--root-works", "--grace", grace, "--estimate", estimate,
                "--progress-interval", 10]
        t0 = time.monotonic()
        job, out = self.sbatch("farm.sbatch", mux_id, *args, time_limit=1)
        info = self.wait_job(job, out, timeout=150)
        text = self.output(out)
        print(f"\njob {job} (srun, --time=1): {info['JobState']} exit {info['ExitCode']} "
              f"after {info['RunTime']} (test waited {time.monotonic() - t0:.0f} s)\n{text}", flush=True)

        # mpmux ended the job itself, in time: Slurm did not kill it.
        self.assertEqual((info["JobState"], info["ExitCode"]), ("FAILED", f"{STOPPED}:0"), text)
        self.assertIn(f"mpmux run: exit {STOPPED}", text)
        reason, st = self.assertResumable(mux_id, text)
        self.assertEqual(reason, "deadline reached", text)
        self.assertLess(st["done"], n)

        # It used the time it had: the last element ended in the few seconds before end - grace,
        # none after (the job's end is whole seconds, hence the 1 s of slack).
        limit_end = local_time(info["StartTime"]) + time_limit_s(info["TimeLimit"])
        last = max(t for _, t in log_entries(self.log))
        print(f"last element ended {limit_end - last:.1f} s before the job's time limit "
              f"(--grace {grace}, --estimate {estimate}, elements of 1 s)", flush=True)
        self.assertLessEqual(last, limit_end - grace + 1, "an element ran into the grace period")
        self.assertGreaterEqual(last, limit_end - grace - estimate - 5,
                                "the run stopped long before the deadline")

        # The next job, with mpirun inside the allocation this time, finishes the rest.
        job2, out2 = self.sbatch("farm.sbatch", mux_id, *args, time_limit=5, launcher="mpirun")
        info2 = self.wait_job(job2, out2, timeout=120)
        text2 = self.output(out2)
        print(f"job {job2} (mpirun, --time=5): {info2['JobState']} exit {info2['ExitCode']} after "
              f"{info2['RunTime']}", flush=True)
        self.assertEqual((info2["JobState"], info2["ExitCode"]), ("COMPLETED", "0:0"), text2)
        self.assertEqual(mpmux("done", mux_id).returncode, 0, text2)
        self.assertEqual(sorted(i for i, _ in log_entries(self.log)), list(range(n)),
                         "each element exactly once")

    def test_usr1_to_the_job_steps_drains_the_run_and_lets_running_elements_finish(self):
        # Elements of 2 s on 2 working ranks; the signal comes once a third element started, so
        # that elements run when it comes; a grace long enough for them to finish.
        n = 40
        _, mux_id = self.new_session("--range", n)
        started = os.path.join(self.tmp, "started.log")
        task = f"sh -c 'echo {{#}} >> {started}; sleep 2; echo {{#}} >> {self.log}'"
        job, out = self.sbatch("farm.sbatch", mux_id, "--exec", task, "--root-works", "--grace", 20,
                               "--progress-interval", 10, time_limit=5)
        self.wait_for_lines(started, 3, job, out)
        p = run("scancel", "--signal=USR1", job)
        self.assertEqual(p.returncode, 0, p.stderr)
        info = self.wait_job(job, out, timeout=60)
        text = self.output(out)
        running = sorted({i for i, _ in log_entries(started)} - {i for i, _ in log_entries(self.log)})
        print(f"\njob {job} (srun), scancel --signal=USR1 once 3 elements started: {info['JobState']} exit "
              f"{info['ExitCode']} after {info['RunTime']}; started but not ended: {running}\n{text}",
              flush=True)
        self.assertEqual((info["JobState"], info["ExitCode"]), ("FAILED", f"{STOPPED}:0"), text)
        reason, st = self.assertResumable(mux_id, text)
        self.assertEqual(reason, "stop signal received", text)
        self.assertEqual(running, [], "elements running at the drain must finish within --grace")
        self.assertLess(st["done"], n)

    def test_usr1_to_the_batch_script_drains_and_the_job_requeues_until_done(self):
        n = 60
        _, mux_id = self.new_session("--range", n)
        task = f"sh -c 'sleep 0.5; echo {{#}} >> {self.log}'"
        # --signal on the command line overrides the template's B:USR1@300, which a 5-minute job
        # would get at once; the signal comes from scancel instead, by the same path. mpirun passes
        # it to the ranks alone (srun's step-wide delivery is the subject of the test above).
        job, out = self.sbatch("requeue-on-signal.sbatch", mux_id, "--exec", task, "--root-works",
                               "--grace", 20, "--progress-interval", 10, time_limit=5, launcher="mpirun",
                               options=["--signal=B:USR1@10"])
        self.wait_for_lines(self.log, 8, job, out)
        done_at_signal = len(log_entries(self.log))
        p = run("scancel", "--batch", "--signal=USR1", job)
        self.assertEqual(p.returncode, 0, p.stderr)
        t0 = time.monotonic()
        info = self.wait_job(job, out, timeout=120)
        text = self.output(out)
        print(f"\njob {job} (mpirun), scancel --batch --signal=USR1 after {done_at_signal} elements: "
              f"{info['JobState']} exit {info['ExitCode']}, {info['Restarts']} requeue(s), done "
              f"{time.monotonic() - t0:.0f} s after the signal\n{text}", flush=True)
        self.assertEqual((info["JobState"], info["ExitCode"]), ("COMPLETED", "0:0"), text)
        self.assertEqual(info["Restarts"], "1", text)
        self.assertIn("mpmux job: SIGUSR1", text)
        self.assertRegex(text, r"(?m)^mpmux: stopped \(stop signal received\): \d+ of 60 elements done")
        self.assertIn(f"mpmux run: exit {STOPPED}", text)
        self.assertIn("requeueing job", text)
        self.assertIn("mpmux run: exit 0", text)
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"]), (n, 0), st)
        self.assertEqual(sorted(i for i, _ in log_entries(self.log)), list(range(n)),
                         "each element exactly once")


    def elements_by_process(self, path):
        """Lines 'INDEX PID' that tasks appended (PID: the mpmux process that ran the task)."""
        out = []
        if os.path.exists(path):
            with open(path) as f:
                out = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
        return out

    def wait_gone(self, name, timeout):
        """Waits until no job named NAME is pending or running; returns squeue's last lines."""
        end = time.monotonic() + timeout
        while True:
            p = run("squeue", "-h", "-n", name, "-o", "%i %T")
            if p.returncode == 0 and not p.stdout.strip():
                return
            if time.monotonic() > end:
                raise AssertionError(f"jobs named {name} still queued after {timeout} s:\n{p.stdout}")
            time.sleep(0.5)

    def test_array_tasks_work_through_one_session_together(self):
        n = 80
        _, mux_id = self.new_session("--range", n)
        task = f"sh -c 'sleep 0.25; echo {{#}} $PPID >> {self.log}'"
        out = os.path.join(self.tmp, "array-%A_%a.out")
        # One task per array element: each is a run of one rank, and two fit the node at once.
        cmd = ["sbatch", "--parsable", "--array=1-3", "--ntasks=1", "--time=5", f"--output={out}",
               f"--chdir={self.tmp}", os.path.join(SOURCE, "slurm", "array.sbatch"), mux_id, "--exec", task,
               "--progress-interval", "10"]
        p = run(*cmd, env=dict(ENV, MPMUX=MPMUX))
        self.assertEqual(p.returncode, 0, f"{' '.join(cmd)}\n{p.stderr}")
        job = p.stdout.strip().split(";")[0]
        self.jobs.append(job)
        self.wait_gone("mpmux-array", timeout=150)
        texts = {t: self.output(out.replace("%A", job).replace("%a", str(t))) for t in (1, 2, 3)}
        for t in (1, 2, 3):
            info = job_info(f"{job}_{t}")
            print(f"\narray task {job}_{t}: {info.get('JobState')} exit {info.get('ExitCode')}\n{texts[t]}",
                  flush=True)
            self.assertEqual((info.get("JobState"), info.get("ExitCode")), ("COMPLETED", "0:0"), texts[t])
        ran = self.elements_by_process(self.log)
        self.assertEqual(sorted(i for i, _ in ran), list(range(n)), "each element exactly once")
        by_process = {}
        for _, pid in ran:
            by_process[pid] = by_process.get(pid, 0) + 1
        print(f"elements per array task's mpmux process: {sorted(by_process.values())}", flush=True)
        self.assertGreaterEqual(len(by_process), 2, "the array tasks did not share the session")
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (n, 0, 0), st)

    def test_chain_submits_jobs_until_the_session_is_done(self):
        # Each job has 60 s and stops 50 s before its end: about 10 s of 1 s elements on 2 ranks,
        # so 40 elements take a few jobs, each submitted by the one before it.
        n = 40
        _, mux_id = self.new_session("--range", n)
        task = f"sh -c 'sleep 1; echo {{#}} $PPID >> {self.log}'"
        out = os.path.join(self.tmp, "chain-%j.out")
        p = run(os.path.join(SOURCE, "slurm", "chain.sh"), mux_id, "--ntasks=2", "--time=1",
                f"--output={out}", f"--chdir={self.tmp}", "--", "--exec", task, "--root-works",
                "--grace", 50, "--estimate", 1, "--progress-interval", 10,
                env=dict(ENV, MPMUX=MPMUX, MPMUX_CHAIN_MAX="8"))
        self.assertEqual(p.returncode, 0, p.stderr)
        first = p.stdout.strip()
        self.assertRegex(first, r"^\d+$", p.stdout)
        self.jobs.append(first)
        self.wait_gone("mpmux-chain", timeout=400)
        outputs = sorted(f for f in os.listdir(self.tmp) if f.startswith("chain-"))
        texts = [self.output(os.path.join(self.tmp, f)) for f in outputs]
        for f, text in zip(outputs, texts):
            print(f"\n{f}:\n{text}", flush=True)
        worked = [t for t in texts if "mpmux run: exit" in t]
        self.assertGreaterEqual(len(worked), 2, "the session was done by one job: no chain to see")
        self.assertTrue(any("mpmux run: exit 75" in t for t in worked), texts)
        self.assertIn("mpmux run: exit 0", worked[-1])
        ran = self.elements_by_process(self.log)
        self.assertEqual(sorted(i for i, _ in ran), list(range(n)), "each element exactly once")
        self.assertEqual(mpmux("done", mux_id).returncode, 0)


if __name__ == "__main__":
    unittest.main()
