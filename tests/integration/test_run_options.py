"""mpmux run: --retries, --timeout, --deadline/--estimate, exit codes 0, 1 and 75."""
import os
import time
import unittest

from mpmuxtest import TempDirTest, mpirun, mpmux


class RunOptions(TempDirTest):
    def test_retries_run_a_flaky_element_again_until_it_succeeds(self):
        _, mux_id = self.new_session("--range", "30")
        counts = os.path.join(self.tmp, "counts")
        os.mkdir(counts)
        # Element 7 fails on its first two attempts; each attempt is counted in a file.
        task = (f"n=$(cat {counts}/{{i}} 2>/dev/null || echo 0); echo $((n + 1)) > {counts}/{{i}}; "
                f"if [ {{i}} -eq 7 ] && [ $n -lt 2 ]; then echo flaky >&2; exit 4; fi")
        p = mpirun(3, "run", mux_id, "--retries", "2", "--shell", "--exec", task)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.counts(mux_id), {"total": 30, "done": 30, "failed": 0, "running": 0, "pending": 0})
        attempts = {}
        for f in os.listdir(counts):
            with open(os.path.join(counts, f)) as count:
                attempts[int(f)] = int(count.read())
        self.assertEqual(attempts, {i: 3 if i == 7 else 1 for i in range(30)})

    def test_an_element_out_of_retries_is_failed_for_good_and_exit_is_1(self):
        _, mux_id = self.new_session("--range", "12")
        p = mpirun(2, "run", mux_id, "--retries", "1", "--exec", "test {i} -ne 5")
        self.assertEqual(p.returncode, 1, p.stderr)
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (11, 1, 0))
        # A second run does not touch it; --rerun-failed does.
        self.assertEqual(mpirun(2, "run", mux_id, "--exec", "true").returncode, 1)
        self.assertEqual(mpirun(2, "run", mux_id, "--rerun-failed", "--exec", "true").returncode, 0)
        self.assertEqual(self.stat(mux_id)["done"], 12)

    def test_a_timeout_kills_the_task_and_fails_the_attempt(self):
        _, mux_id = self.new_session("--range", "4")
        p = mpirun(3, "run", mux_id, "--timeout", "0.5", "--shell",
                   "--exec", "if [ {i} -eq 2 ]; then sleep 30; fi")
        self.assertEqual(p.returncode, 1, p.stderr)
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"]), (3, 1))
        self.assertRegex(mpmux("stat", mux_id, check=0).stdout, r"timed out")

    def test_no_element_starts_that_cannot_end_before_the_deadline(self):
        _, mux_id = self.new_session("--range", "60")
        log = os.path.join(self.tmp, "log")
        # An absolute end time, so that the test and mpmux agree on it however long MPI takes
        # to start (a relative "+5s" would count from mpmux's own start). An element starts only
        # if its p90 estimate ends it by deadline - grace; the grace of 3 s is the margin a 0.2 s
        # task has on a loaded machine (spawning a shell and `date` can take a second there).
        deadline = float(int(time.time()) + 8)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))
        p = mpirun(3, "run", mux_id, "--deadline", at, "--grace", "3", "--shell",
                   "--exec", f"sleep 0.2; echo {{i}} $(date +%s.%N) >> {log}")
        self.assertEqual(p.returncode, 75, p.stderr)
        self.assertIn("deadline", p.stderr)
        with open(log) as lines:
            ends = [float(line.split()[1]) for line in lines]
        st = self.stat(mux_id)
        self.assertEqual(st["done"], len(ends))
        self.assertEqual(st["failed"], 0)
        self.assertEqual(st["done"] + st["pending"], 60)
        for end in ends:
            self.assertLess(end, deadline, "an element ended after the deadline")
        # Without the deadline the rest is done.
        self.assertEqual(mpirun(3, "run", mux_id, "--exec", "true").returncode, 0)
        self.assertEqual(self.stat(mux_id)["done"], 60)

    def test_an_estimate_longer_than_the_time_left_starts_nothing(self):
        _, mux_id = self.new_session("--range", "5")
        out = os.path.join(self.tmp, "ran")
        p = mpmux("run", mux_id, "--deadline", "+10s", "--grace", "1", "--estimate", "60",
                  "--shell", "--exec", f"touch {out}")
        self.assertEqual(p.returncode, 75, p.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertEqual(self.stat(mux_id)["pending"], 5)

    def test_bad_option_values_are_usage_errors(self):
        _, mux_id = self.new_session("--range", "2")
        for args, needle in ((("--deadline", "tomorrow"), "--deadline"), (("--retries", "-1"), "--retries"),
                             (("--timeout", "-3"), "--timeout"), (("--grace", "x"), "--grace")):
            with self.subTest(args=args):
                self.assertUsageError(mpmux("run", mux_id, "--exec", "true", *args), needle)
        self.assertEqual(self.stat(mux_id)["pending"], 2)


if __name__ == "__main__":
    unittest.main()
