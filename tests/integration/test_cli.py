"""The mpmux command end to end: new, session, run (under mpirun), stat, done, destroy."""
import csv
import json
import os
import re
import unittest

from mpmuxtest import TempDirTest, mpmux, mpirun


def write_grid(path, n):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["alpha", "beta", "seed"])
        for i in range(n):
            w.writerow([round(0.001 * i, 3), i % 7, 1000 + i])


class Sweep(TempDirTest):
    """The walk of docs/guide.md: a 1,000-row grid processed under mpirun."""

    def run_sweep(self, np):
        grid = os.path.join(self.tmp, "grid.csv")
        write_grid(grid, 1000)
        p = mpmux("new", self.root, "--from", grid, "--tag", "sweep", check=0)
        mux_dir = p.stdout.strip()
        self.assertEqual(p.stdout.count("\n"), 1, "the mux directory alone on stdout")
        self.assertRegex(os.path.basename(mux_dir), r"^\d{8}-\d{6}-sweep$")
        self.assertEqual(os.path.dirname(mux_dir), self.root)
        self.assertTrue(os.path.isfile(os.path.join(mux_dir, "elements.h5")))

        p = mpmux("session", mux_dir, check=0)
        mux_id = p.stdout.strip()
        self.assertEqual(p.stdout.count("\n"), 1)
        self.assertRegex(mux_id, r"^file:///[A-Za-z0-9/._~%-]+#s=\d{8}T\d{6}Z-[0-9a-f]{4}$")
        self.assertEqual(self.counts(mux_id), {"total": 1000, "done": 0, "failed": 0, "running": 0, "pending": 1000})
        self.assertEqual(mpmux("done", mux_id).returncode, 1)

        # Each task writes its own file with noclobber: a second run of one element would fail.
        out = os.path.join(self.tmp, "out")
        os.mkdir(out)
        template = "sh -c 'set -C; echo \"$1 $2 $3\" > \"$0/$4\"; echo $4' " + out + " {alpha} {beta} {seed} {#}"
        if np == 1:
            p = mpmux("run", mux_id, "--exec", template, "--progress-interval", "0.05")
        else:
            p = mpirun(np, "run", mux_id, "--exec", template, "--progress-interval", "0.05")
        self.assertEqual(p.returncode, 0, p.stderr)
        # stderr is a file here: plain progress lines, ending with the whole count.
        self.assertIn("mpmux: 1000/1000 elements (100.0%)", p.stderr)

        with open(grid) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(sorted(os.listdir(out), key=int), [str(i) for i in range(1000)])
        for i in (0, 1, 499, 999):
            with open(os.path.join(out, str(i))) as f:
                alpha, beta, seed = f.read().split()
            self.assertEqual(float(alpha), float(rows[i]["alpha"]))
            self.assertEqual((beta, seed), (rows[i]["beta"], rows[i]["seed"]))

        self.assertEqual(self.counts(mux_id), {"total": 1000, "done": 1000, "failed": 0, "running": 0, "pending": 0})
        table = mpmux("stat", mux_id, check=0).stdout
        self.assertRegex(table, r"(?m)^done\s+1000$")
        self.assertRegex(table, r"(?m)^pending\s+0$")
        p = mpmux("done", mux_id, check=0)
        self.assertIn("1000 of 1000", p.stdout)

        # Running again finds nothing to do and runs nothing.
        p = mpirun(2, "run", mux_id, "--exec", template) if np > 1 else mpmux("run", mux_id, "--exec", template)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(os.listdir(out)), 1000)

        mpmux("destroy", mux_dir, check=0)
        self.assertFalse(os.path.exists(mux_dir))
        self.assertUsageError(mpmux("stat", mux_id), mux_dir)

    def test_one_process(self):
        self.run_sweep(1)

    def test_two_ranks(self):
        self.run_sweep(2)

    def test_three_ranks(self):
        self.run_sweep(3)

    def test_four_ranks(self):
        self.run_sweep(4)


class Commands(TempDirTest):
    def test_grid_and_range_sets_feed_templates(self):
        _, mux_id = self.new_session("--grid", "a=1,2,3", "b=0:1:0.5")
        out = os.path.join(self.tmp, "o")
        os.mkdir(out)
        p = mpmux("run", mux_id, "--shell", "--exec", "echo {a} {b} > " + out + "/{#}")
        self.assertEqual(p.returncode, 0, p.stderr)
        got = [open(os.path.join(out, str(i))).read().split() for i in range(6)]
        self.assertEqual(got, [["1", "0.0"], ["1", "0.5"], ["2", "0.0"], ["2", "0.5"], ["3", "0.0"], ["3", "0.5"]])

        _, mux_id = self.new_session("--range", "5")
        p = mpmux("run", mux_id, "--exec", "test {i} -lt 5")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.stat(mux_id)["done"], 5)

    def test_failed_tasks_are_counted_and_exit_1(self):
        _, mux_id = self.new_session("--range", "10")
        p = mpirun(2, "run", mux_id, "--exec", "test {i} -ne 3")
        self.assertEqual(p.returncode, 1, p.stderr)
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (9, 1, 0))
        self.assertEqual(mpmux("done", mux_id).returncode, 1)

    def test_sessions_are_independent(self):
        d, a = self.new_session("--range", "20")
        b = mpmux("session", d, check=0).stdout.strip()
        self.assertNotEqual(a, b)
        self.assertEqual(mpmux("run", a, "--exec", "true").returncode, 0)
        self.assertEqual(self.stat(a)["done"], 20)
        self.assertEqual(self.stat(b)["done"], 0)

    def test_names_within_one_second_do_not_collide(self):
        dirs = {mpmux("new", self.root, "--range", "1", "--tag", "x", check=0).stdout.strip() for _ in range(3)}
        self.assertEqual(len(dirs), 3)

    def test_help_and_version(self):
        p = mpmux("--help", check=0)
        for sub in ("new", "session", "run", "stat", "done", "destroy"):
            self.assertIn(sub, p.stdout)
        self.assertRegex(mpmux("--version", check=0).stdout, r"\d+\.\d+\.\d+")


if __name__ == "__main__":
    unittest.main()
