"""MPMUX_ID, which `sbatch --mux` sets in a job: the commands that work on one session (run, stat,
results, report, done, check) take it when given no MUX_ID; a MUX_ID given wins; neither, or a
malformed MPMUX_ID, is one line and exit 2. `mpmux check` opens a session and nothing more. And
`mpmux run` as one of several srun tasks that MPI sees as singletons (SLURM_STEP_NUM_TASKS > 1 with
no MPI launcher) stops with one line naming --mpi=pmix; mpirun's ranks inside a job are not that.
"""
import os
import subprocess
import unittest

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest


def with_env(**values):
    env = {k: v for k, v in ENV.items() if k not in ("MPMUX_ID", "SLURM_STEP_NUM_TASKS")}
    env.update(values)
    return env


def mpmux(*args, env=None, **kw):
    """The mpmux CLI in `env` (default: without MPMUX_ID)."""
    return subprocess.run([MPMUX, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=env or with_env(), **kw)


def mpirun(np, *args, env):
    return subprocess.run([MPIEXEC, "-n", str(np), "--oversubscribe", MPMUX, *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


class MuxIdEnvTest(TempDirTest):
    def test_commands_given_no_mux_id_work_on_the_session_mpmux_id_names(self):
        _, mux_id = self.new_session("--range", 5)
        env = with_env(MPMUX_ID=mux_id)
        p = mpmux("run", "--exec", "true", "--no-progress", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.counts(mux_id)["done"], 5)
        self.assertEqual(mpmux("done", env=env).stdout, "5 of 5 elements done\n")
        p = mpmux("stat", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(f"mux id   {mux_id}\n", p.stdout)
        self.assertEqual(len(mpmux("results", "--format", "jsonl", env=env).stdout.splitlines()), 5)
        page = os.path.join(self.tmp, "report.html")
        self.assertEqual(mpmux("report", "-o", page, env=env).returncode, 0)
        self.assertTrue(os.path.getsize(page) > 0)
        self.assertEqual(mpmux("check", env=env).stdout, f"{mux_id}: a session of 5 elements\n")

    def test_the_ranks_of_mpirun_take_mpmux_id_too(self):
        _, mux_id = self.new_session("--range", 8)
        p = mpirun(2, "run", "--exec", "true", "--no-progress", env=with_env(MPMUX_ID=mux_id))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.counts(mux_id)["done"], 8)

    def test_a_mux_id_on_the_command_line_wins_over_mpmux_id(self):
        _, mux_id = self.new_session("--range", 3)
        _, other = self.new_session("--range", 4)
        p = mpmux("run", mux_id, "--exec", "true", "--no-progress", env=with_env(MPMUX_ID=other))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual((self.counts(mux_id)["done"], self.counts(other)["done"]), (3, 0))

    def test_neither_mux_id_nor_mpmux_id_is_one_line_naming_both(self):
        for args in (["run", "--exec", "true"], ["stat"], ["results"], ["report", "-o", "r.html"], ["done"],
                     ["check"]):
            with self.subTest(command=args[0]):
                p = mpmux(*args, env=with_env(MPMUX_ID=""), cwd=self.tmp)
                self.assertUsageError(p, f"{args[0]}: no MUX_ID given", "MPMUX_ID is not set", "sbatch --mux")

    def test_a_malformed_mpmux_id_is_one_line_naming_the_variable(self):
        p = mpmux("stat", env=with_env(MPMUX_ID="scratch/sweep"))
        self.assertUsageError(p, "MPMUX_ID: ", "'scratch/sweep'")

    def test_check_names_what_is_missing_and_changes_nothing(self):
        d, mux_id = self.new_session("--range", 3)
        self.assertEqual(mpmux("check", mux_id).returncode, 0)
        missing = mux_id.rsplit("=", 1)[0] + "=20990101T000000Z-0000"
        p = mpmux("check", "--", missing)
        self.assertUsageError(p, "session '20990101T000000Z-0000'", "does not exist")
        self.assertEqual(sorted(os.listdir(os.path.join(d, "sessions"))), [mux_id.rsplit("=", 1)[1]])

    def test_a_run_among_srun_tasks_without_mpi_stops_with_one_line_naming_mpi_pmix(self):
        _, mux_id = self.new_session("--range", 4)
        p = mpmux("run", mux_id, "--exec", "true", env=with_env(SLURM_STEP_NUM_TASKS="3"))
        self.assertUsageError(p, "srun started 3 tasks", "srun --mpi=pmix")
        self.assertEqual(self.counts(mux_id)["done"], 0)
        self.assertEqual(self.stat(mux_id)["participants"], [])
        # One srun task alone is a plain run, as without Slurm.
        p = mpmux("run", mux_id, "--exec", "true", "--no-progress", env=with_env(SLURM_STEP_NUM_TASKS="1"))
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_mpirun_inside_a_job_step_is_not_taken_for_singletons(self):
        _, mux_id = self.new_session("--range", 4)
        p = mpirun(2, "run", mux_id, "--exec", "true", "--no-progress", env=with_env(SLURM_STEP_NUM_TASKS="2"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.counts(mux_id)["done"], 4)


if __name__ == "__main__":
    unittest.main()
