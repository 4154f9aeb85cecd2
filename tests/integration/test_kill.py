"""No task outlives its rank: a job killed with SIGKILL (mpirun's process group, or one rank alone,
as the OOM killer would) leaves no task process running, also under --procs, and a grandchild
started as docs/guide.md says ("No task outlives its rank") dies with its task. And the kill
window: killed and re-run, a job runs again only elements that ended within the commit interval
before a kill (kill_window.py).

Tasks are a copy of sleep under a name unique to the test, so /proc tells them apart from every
other process on the machine."""
import os
import random
import shutil
import signal
import subprocess
import time
import unittest

import kill_window
from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, mpmux
from kill_window import cmdline
from test_crash import _processes, become_subreaper, descendants, reap_orphans

GONE_WITHIN = 1.0  # seconds after the rank is gone; PDEATHSIG is delivered as the rank exits


def live_processes(program):
    """pid -> ppid of every live (not zombie) process that runs program (its argv[0])."""
    out = {}
    for pid, (ppid, state) in _processes().items():
        if state not in ("Z", "X") and cmdline(pid)[:1] == [program.encode()]:
            out[pid] = ppid
    return out


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.005)


class KillTest(TempDirTest):
    @classmethod
    def setUpClass(cls):
        become_subreaper()  # orphans come here: the test sees them and tearDown kills them

    def setUp(self):
        super().setUp()
        # A copy of sleep whose path is unique: the marker of this test's task processes.
        self.sleeper = os.path.join(self.tmp, "mpmux-kill-test-sleep")
        shutil.copy(shutil.which("sleep"), self.sleeper)
        self.job = None

    def tearDown(self):
        if self.job is not None and self.job.poll() is None:
            os.killpg(self.job.pid, signal.SIGKILL)
            self.job.wait()
        reap_orphans()
        super().tearDown()

    def start_job(self, np, *run_args, n_elements=20):
        _, mux_id = self.new_session("--range", str(n_elements))
        out = open(os.path.join(self.tmp, "job.out"), "wb")
        self.job = subprocess.Popen([MPIEXEC, "-n", str(np), "--oversubscribe", MPMUX, "run", mux_id,
                                     "--no-progress", *run_args],
                                    stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
        out.close()
        return mux_id

    def wait_for_tasks(self, n, marker=None):
        marker = marker or self.sleeper
        wait_until(lambda: len(live_processes(marker)) >= n or self.job.poll() is not None, 120,
                   f"{n} tasks running")
        self.assertIsNone(self.job.poll(), "the job ended before the kill")
        return live_processes(marker)

    def ranks(self):
        """The job's mpmux processes (this test's descendants only)."""
        return set(descendants(os.getpid())) & set(live_processes(MPMUX))

    def assert_gone_after(self, ranks, marker=None):
        """Waits for the given rank processes to be gone, then for the tasks, GONE_WITHIN."""
        marker = marker or self.sleeper
        wait_until(lambda: not (ranks & set(live_processes(MPMUX))), 60, "the killed ranks gone")
        wait_until(lambda: not live_processes(marker), GONE_WITHIN,
                   f"task processes left: {live_processes(marker)}")

    def test_killing_the_job_kills_every_running_task(self):
        self.start_job(3, "--exec", f"{self.sleeper} 300")
        self.wait_for_tasks(2)
        ranks = self.ranks()
        os.killpg(self.job.pid, signal.SIGKILL)
        self.job.wait()
        self.assert_gone_after(ranks)

    def test_killing_one_rank_kills_its_tasks(self):
        self.start_job(3, "--exec", f"{self.sleeper} 300")
        tasks = self.wait_for_tasks(2)
        victim = next(iter(tasks.values()))  # the rank that runs this task
        mine = {t for t, rank in tasks.items() if rank == victim}
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in live_processes(MPMUX), 60, "the killed rank gone")
        wait_until(lambda: not (mine & set(live_processes(self.sleeper))), GONE_WITHIN,
                   f"the killed rank's tasks left: {mine & set(live_processes(self.sleeper))}")

    def test_killing_the_job_kills_the_tasks_of_every_pool_thread(self):
        self.start_job(2, "--exec", f"{self.sleeper} 300", "--procs", "3")
        tasks = self.wait_for_tasks(3)
        self.assertEqual(len(set(tasks.values())), 1, "one worker rank runs all three")
        ranks = self.ranks()
        os.killpg(self.job.pid, signal.SIGKILL)
        self.job.wait()
        self.assert_gone_after(ranks)

    def test_a_grandchild_started_with_pdeathsig_dies_with_its_task(self):
        # The guide's advice for a task that starts children of its own, here even in a session
        # of their own: setpriv --pdeathsig KILL ties each to the task, as mpmux ties the task to
        # its rank.
        marker = self.sleeper + "-grandchild"
        shutil.copy(self.sleeper, marker)
        self.start_job(2, "--shell", "--exec",
                       f"setsid setpriv --pdeathsig KILL {marker} 300 & wait")
        self.wait_for_tasks(1, marker)
        ranks = self.ranks()
        os.killpg(self.job.pid, signal.SIGKILL)
        self.job.wait()
        self.assert_gone_after(ranks, marker)

    def test_a_killed_job_reruns_only_elements_that_ended_within_the_commit_interval(self):
        n, kills = 60, 5
        _, mux_id = self.new_session("--range", str(n))
        seed = int(os.environ.get("MPMUX_KILL_SEED", random.SystemRandom().randrange(1 << 32)))
        print(f"\nkill window: seed {seed} (MPMUX_KILL_SEED={seed} repeats it)", flush=True)
        figures = kill_window.kill_and_rerun(MPMUX, self.tmp, mux_id, n, 0.2, kills, seed,
                                             window_s=0.2, moment=(0.8, 2.5))
        self.assertGreaterEqual(figures["kills"], 1)
        self.assertEqual(mpmux("done", mux_id).returncode, 0)
        self.assertEqual(sorted(figures["ended"]), list(range(n)))
        for k, kill in enumerate(figures["per_kill"]):
            # The promise, per kill: an element that ended and is not journaled ended inside the
            # last commit interval (0.2 s, the longest the journal waits).
            self.assertLessEqual(kill["unjournaled"], kill["in_window"], f"kill {k + 1}")
        # No task outlived its rank to end after the kill, so those are the only extra executions
        # that ran to the end; the tasks in flight were killed with their ranks.
        self.assertEqual(figures["orphan_ends"], 0)
        self.assertLessEqual(figures["extra_ends"], sum(len(k["unjournaled"]) for k in figures["per_kill"]))


if __name__ == "__main__":
    unittest.main()
