"""mpmux run --procs K: each rank runs up to K commands at once, each element still exactly once."""
import os
import signal
import subprocess
import time
import unittest

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest, most_at_once, mpirun, mpmux


def intervals(log):
    """(index, start, end) of each execution the tasks logged."""
    out = []
    with open(log) as f:
        for line in f:
            i, start, end = line.split()
            out.append((int(i), float(start), float(end)))
    return out


class Procs(TempDirTest):
    def task(self, seconds):
        log = os.path.join(self.tmp, "log")
        return log, f"s=$(date +%s.%N); sleep {seconds}; echo {{i}} $s $(date +%s.%N) >> {log}"

    def test_one_rank_runs_k_commands_at_once(self):
        _, mux_id = self.new_session("--range", "24")
        log, task = self.task(0.4)
        p = mpmux("run", mux_id, "--procs", "4", "--shell", "--exec", task)
        self.assertEqual(p.returncode, 0, p.stderr)
        runs = intervals(log)
        self.assertEqual(sorted(i for i, _, _ in runs), list(range(24)))
        self.assertEqual(most_at_once([(start, end) for _, start, end in runs]), 4)
        self.assertEqual(self.stat(mux_id)["done"], 24)

    def test_every_rank_feeds_its_own_commands(self):
        _, mux_id = self.new_session("--range", "60")
        log, task = self.task(0.05)
        p = mpirun(3, "run", mux_id, "--procs", "3", "--shell", "--exec", task)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(sorted(i for i, _, _ in intervals(log)), list(range(60)))
        self.assertEqual(self.counts(mux_id), {"total": 60, "done": 60, "failed": 0, "running": 0, "pending": 0})

    def test_retries_and_failures_with_several_commands_at_once(self):
        _, mux_id = self.new_session("--range", "20")
        p = mpmux("run", mux_id, "--procs", "3", "--retries", "2", "--exec", "test {i} -ne 9")
        self.assertEqual(p.returncode, 1, p.stderr)
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"]), (19, 1))
        self.assertRegex(mpmux("stat", mux_id, check=0).stdout, r"element 9\s+attempts 3")

    def test_a_drain_lets_the_running_commands_finish(self):
        _, mux_id = self.new_session("--range", "12")
        log, task = self.task(1.5)
        proc = subprocess.Popen([MPMUX, "run", mux_id, "--procs", "3", "--grace", "30", "--shell", "--exec", task],
                                env=ENV, stderr=subprocess.PIPE, text=True)
        while not os.path.exists(log) and proc.poll() is None:  # wait for the first commands to end
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 75, err)
        runs = intervals(log)
        st = self.stat(mux_id)
        self.assertEqual(st["done"], len(runs), "a command running at the drain was not finished and kept")
        self.assertEqual(st["failed"], 0)
        self.assertLess(st["done"], 12)
        self.assertEqual(st["done"] + st["pending"], 12)

    def test_bad_procs_is_a_usage_error(self):
        _, mux_id = self.new_session("--range", "2")
        self.assertUsageError(mpmux("run", mux_id, "--procs", "0", "--exec", "true"), "--procs")


if __name__ == "__main__":
    unittest.main()
