"""Drain test: SIGUSR1 (and SIGTERM) stop a run gracefully. Running elements finish within
--grace and are journaled, the rest stays pending, the run exits 75, and a re-run resumes: across
30 drains of a 2,000-element session no element runs twice. A second signal cuts the grace to
zero; a task running past the grace is killed and left pending, not failed."""
import os
import random
import re
import signal
import subprocess
import time
import unittest

import test_crash as crash
from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, mpmux

STOPPED = 75


def wait_for_file(path, proc, timeout=60):
    """Waits until `path` holds a line (written by a task); returns its text."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                text = f.read()
            if text.endswith("\n"):
                return text.strip()
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {path} was written")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} not written within {timeout} s")
        time.sleep(0.005)


def alive(pid):
    """True while pid is a process that has not ended (a zombie has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def rank_pids(mpirun_pid):
    """MPI rank -> pid of the mpmux processes mpirun started."""
    ranks = {}
    for pid in crash.descendants(mpirun_pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "mpmux":
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"OMPI_COMM_WORLD_RANK" in env:
            ranks[int(env[b"OMPI_COMM_WORLD_RANK"])] = pid
    return ranks


def finish(proc, out_path, timeout=60):
    """Waits for a run to end; returns (exit code, its output)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        crash.kill_job(proc)
        raise AssertionError(f"the run did not end within {timeout} s after the stop")
    with open(out_path) as f:
        return proc.returncode, f.read()


class DrainTest(TempDirTest):
    @classmethod
    def setUpClass(cls):
        crash.become_subreaper()

    def tearDown(self):
        crash.reap_orphans()  # nothing a failed test started outlives it
        super().tearDown()

    def assertStoppedMessage(self, out, mux_id):
        """The run's last word: one line saying how many are done, matching the journals."""
        m = re.search(r"(?m)^mpmux: stopped \((.+)\): (\d+) of (\d+) elements done", out)
        self.assertIsNotNone(m, out)
        st = crash.stat_json(mux_id)
        self.assertEqual((int(m.group(2)), int(m.group(3))), (st["done"], st["total"]), out)
        return m.group(1)

    def test_thirty_drains_run_every_element_exactly_once(self):
        grid = os.path.join(self.tmp, "grid.csv")
        crash.write_sleep_grid(grid, crash.N_ELEMENTS)
        _, mux_id = self.new_session("--from", grid)
        log = os.path.join(self.tmp, "drain.log")
        seed = int(os.environ.get("MPMUX_CRASH_SEED", random.SystemRandom().randrange(1 << 32)))
        print(f"\ndrain test: seed {seed} (MPMUX_CRASH_SEED={seed} repeats it)", flush=True)
        rng = random.Random(seed)
        args = ["run", mux_id, "--exec", crash.logging_task(log), "--no-progress"]
        drains = 30
        stopped_runs = 0
        for k in range(drains):
            pending = crash.N_ELEMENTS - crash.stat_json(mux_id)["done"]
            out_path = os.path.join(self.tmp, f"run{k}.out")
            proc = crash.start_mpirun(3, args, out_path)
            # The signal comes once elements run: the ranks then have their handlers (before, a
            # signal's default action would kill them, as it kills any program that starts).
            grow = rng.randint(1, max(1, min(int(0.8 * pending), int(2 * pending / (drains - k)))))
            crash.wait_for_lines(log, crash.log_lines(log) + max(1, grow), proc)
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
            code, out = finish(proc, out_path)
            self.assertIn(code, (STOPPED, 0), out)
            counts = crash.executions(log)
            done = set(crash.done_records(mux_id))
            failed = [(r["index"], r["exit_code"], r["signal"])
                      for _, _, recs, _, _ in crash.read_journals(mux_id) for r in recs if r["type"] == "failed"]
            self.assertEqual(failed, [], f"drain {k + 1}: a drain failed tasks (index, exit code, signal)")
            # Nothing ran twice, and everything that ran was journaled before the run ended.
            self.assertEqual([i for i, c in counts.items() if c > 1], [], f"drain {k + 1}")
            self.assertEqual(done, set(counts), f"drain {k + 1}: ran but not journaled, or the reverse")
            if code == STOPPED:
                stopped_runs += 1
                self.assertEqual(self.assertStoppedMessage(out, mux_id), "stop signal received")
            else:
                self.assertEqual(len(done), crash.N_ELEMENTS, out)
                break
            print(f"drain {k + 1:2d} (after {grow} elements): {len(done)} done", flush=True)
        self.assertGreaterEqual(stopped_runs, drains - 1, "most runs must have been drained mid-run")

        p = subprocess.run([MPIEXEC, "-n", "3", "--oversubscribe", MPMUX, *args],
                           capture_output=True, text=True, env=ENV, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(mpmux("done", mux_id).returncode, 0)
        self.assertEqual(crash.executions(log), {i: 1 for i in range(crash.N_ELEMENTS)})
        print(f"drain test: {stopped_runs} drains, 0 elements ran twice", flush=True)
        done = crash.done_records(mux_id)
        for i in range(crash.N_ELEMENTS):
            self.assertEqual([r["result"] for r in done[i]], [f"{i}\n".encode()], f"element {i}")
        for path, _, _, _, torn in crash.read_journals(mux_id):
            self.assertEqual(torn, 0, path)

    def start_long_task(self, *run_args):
        """One element whose task writes its pid and sleeps 30 s, under mpirun -n 2; returns
        (mux_id, proc, out_path, task pid) once the task runs."""
        _, mux_id = self.new_session("--range", "1")
        pid_file = os.path.join(self.tmp, "task.pid")
        out_path = os.path.join(self.tmp, "run.out")
        proc = crash.start_mpirun(2, ["run", mux_id, "--exec", f"sh -c 'echo $$ > {pid_file}; exec sleep 30'",
                                      "--no-progress", *run_args], out_path)
        return mux_id, proc, out_path, int(wait_for_file(pid_file, proc))

    def assertLeftPending(self, mux_id):
        self.assertEqual(self.counts(mux_id), {"total": 1, "done": 0, "failed": 0, "running": 0, "pending": 1})
        records = [r for _, _, recs, _, _ in crash.read_journals(mux_id) for r in recs]
        self.assertEqual(records, [], "a drained attempt is void: nothing is journaled for it")

    def test_a_second_signal_cuts_the_grace_to_zero(self):
        mux_id, proc, out_path, task = self.start_long_task("--grace", "60")
        proc.send_signal(signal.SIGUSR1)
        # Within the grace the task keeps running and the run waits for it.
        with self.assertRaises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)
        self.assertTrue(alive(task))
        t0 = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        code, out = finish(proc, out_path, timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, STOPPED, out)
        self.assertLess(elapsed, 5.0, "the second signal must end the run at once")
        self.assertFalse(alive(task), "the task must be killed")
        self.assertStoppedMessage(out, mux_id)
        self.assertLeftPending(mux_id)

    def test_a_task_running_past_the_grace_is_killed_and_left_pending(self):
        mux_id, proc, out_path, task = self.start_long_task("--grace", "1")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        code, out = finish(proc, out_path, timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, STOPPED, out)
        self.assertGreaterEqual(elapsed, 0.9, "the task had a grace of 1 s")
        self.assertLess(elapsed, 6.0, "the task must be killed once the grace is over")
        self.assertFalse(alive(task))
        self.assertLeftPending(mux_id)
        # The next run runs it again, to the end.
        p = subprocess.run([MPIEXEC, "-n", "2", "--oversubscribe", MPMUX, "run", mux_id, "--exec", "true"],
                           capture_output=True, text=True, env=ENV, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(mpmux("done", mux_id).returncode, 0)

    def sigterm_one_rank(self, rank):
        """SIGTERM sent to one rank directly (not through mpirun, which would signal every rank),
        mid-run: that rank stops claiming and lets its task finish; the stop reaches the root
        (from a worker: it reports being stopped), which stops every rank; all exit 75 together.
        The other ranks stop too: none starts an element it had claimed but not begun (elements
        of 0.3 s, claimed ten at a time here). Nothing acknowledged is lost, nothing runs twice."""
        _, mux_id = self.new_session("--range", "40")
        log = os.path.join(self.tmp, "term.log")
        args = ["run", mux_id, "--exec", f"sh -c 'sleep 0.3; echo \"$1\"; echo \"$1\" >> \"$0\"' {log} {{#}}",
                "--no-progress"]
        out_path = os.path.join(self.tmp, "run.out")
        proc = crash.start_mpirun(3, args, out_path)
        self.assertTrue(crash.wait_for_lines(log, 1, proc))
        ranks = rank_pids(proc.pid)
        self.assertEqual(sorted(ranks), [0, 1, 2])
        before = crash.log_lines(log)
        os.kill(ranks[rank], signal.SIGTERM)
        code, out = finish(proc, out_path)
        self.assertEqual(code, STOPPED, out)
        reason = self.assertStoppedMessage(out, mux_id)
        ended_after = crash.log_lines(log) - before
        print(f"\nSIGTERM to rank {rank}: exit {code}, '{reason}', {ended_after} elements ended after it, "
              f"{crash.stat_json(mux_id)['done']} of 40 done", flush=True)
        # The two running then, and at most one more per worker that began before the stop reached it.
        self.assertLessEqual(ended_after, 4, "ranks kept starting the elements they had claimed")
        counts = crash.executions(log)
        self.assertEqual(set(crash.done_records(mux_id)), set(counts))
        self.assertEqual([i for i, c in counts.items() if c > 1], [])

        p = subprocess.run([MPIEXEC, "-n", "3", "--oversubscribe", MPMUX, *args],
                           capture_output=True, text=True, env=ENV, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(crash.executions(log), {i: 1 for i in range(40)})

    def test_sigterm_to_a_worker_rank_stops_the_run(self):
        self.sigterm_one_rank(1)

    def test_sigterm_to_the_root_rank_stops_the_run(self):
        self.sigterm_one_rank(0)

    def test_sigterm_to_the_root_alone_ends_a_worker_task_after_the_grace(self):
        """The grace holds on every rank, not only on the one that got the signal."""
        mux_id, proc, out_path, task = self.start_long_task("--grace", "1")
        ranks = rank_pids(proc.pid)
        t0 = time.monotonic()
        os.kill(ranks[0], signal.SIGTERM)
        code, out = finish(proc, out_path, timeout=15)
        elapsed = time.monotonic() - t0
        self.assertEqual(code, STOPPED, out)
        self.assertLess(elapsed, 6.0, "the worker's task must be killed once the grace is over")
        self.assertFalse(alive(task))
        self.assertLeftPending(mux_id)

if __name__ == "__main__":
    unittest.main()
