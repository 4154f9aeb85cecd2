"""Workflow managers running mpmux: the Snakemake workflow and the CWL workflow of plugins/workflows/,
run to completion (their MPI step under mpirun) in a folder with a space in its name."""
import csv
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import unittest

import h5py
import yaml

from mpmuxtest import ENV, MPIEXEC, MPMUX, TempDirTest

WORKFLOWS = os.path.join(os.environ.get("MPMUX_SOURCE_DIR", "../.."), "plugins", "workflows")
SNAKEFILE = os.path.join(WORKFLOWS, "snakemake", "Snakefile")
CWL_DIR = os.path.join(WORKFLOWS, "cwl")

# The grid of snakemake/config.yaml and cwl/sweep-job.yml, as `mpmux new --grid` expands it.
ALPHAS = [0.1, 0.2, 0.3, 0.4, 0.5]
BETAS = [1, 2, 3, 4]
SEEDS = [1, 2, 3]
GRID = list(itertools.product(ALPHAS, BETAS, SEEDS))

# The workflows find mpmux on PATH. Open MPI's root and oversubscription settings come from ENV, the
# environment of a user who needs them, not from the workflows.
WORKFLOW_ENV = dict(ENV, PATH=os.path.dirname(os.path.abspath(MPMUX)) + os.pathsep + ENV["PATH"])


def loss(alpha, beta, seed):
    """What plugins/workflows/loss.sh computes."""
    return (alpha - 0.3) ** 2 + (beta - 2) ** 2 / 10 + (seed % 7) / 1000


class WorkflowTest(TempDirTest):
    def setUp(self):
        super().setUp()
        self.work = os.path.join(self.tmp, "work dir")
        os.mkdir(self.work)

    def assertResultsH5(self, path, ranks):
        """results.h5 of the sweep: every element of the grid done once, with its loss as result."""
        with h5py.File(path, "r") as f:
            r = f["/results"][:]
        self.assertEqual(len(r), len(GRID))
        self.assertEqual(list(r["index"]), list(range(len(GRID))))
        self.assertTrue(all(s == b"done" for s in r["status"]), set(r["status"]))
        self.assertEqual(set(r["attempts"]), {1})
        for row, (alpha, beta, seed) in zip(r, GRID):
            self.assertEqual((float(row["alpha"]), int(row["beta"]), int(row["seed"])), (alpha, beta, seed))
            self.assertAlmostEqual(float(row["result"]), loss(alpha, beta, seed), places=6)
        # Rank 0 coordinates; the tasks ran on the other ranks of the MPI step.
        self.assertEqual(set(r["rank"]), set(range(1, ranks)))


class Snakemake(WorkflowTest):
    """plugins/workflows/snakemake: session, sweep (an MPI rule), results, losses."""

    def snakemake_command(self, *args):
        # The MPI starter given as Snakemake's documentation does: --set-resources RULE:mpi=...
        return [sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "-d", self.work, "--cores", "1",
                "--set-resources", f"sweep:mpi={MPIEXEC}", *args]

    def snakemake(self, *args):
        return subprocess.run(self.snakemake_command(*args), capture_output=True, text=True, env=WORKFLOW_ENV,
                              timeout=300)

    def mux_id(self):
        with open(os.path.join(self.work, "mux_id.txt")) as f:
            return f.read().strip()

    def test_sweep_runs_to_completion_and_a_second_run_has_nothing_to_do(self):
        p = self.snakemake()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        mux_id = self.mux_id()
        self.assertIn("%20", mux_id, "the mux root lies in the folder with a space in its name")
        self.assertEqual(self.counts(mux_id), {"total": 60, "done": 60, "failed": 0, "running": 0, "pending": 0})
        with open(os.path.join(self.work, "sweep.txt")) as f:
            self.assertEqual(f.read(), "60 of 60 elements done\n")
        self.assertResultsH5(os.path.join(self.work, "results.h5"), ranks=3)

        with open(os.path.join(self.work, "losses.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(sorted((float(r["alpha"]), int(r["beta"]), int(r["seed"])) for r in rows), sorted(GRID))
        for r in rows:
            self.assertAlmostEqual(float(r["loss"]), loss(float(r["alpha"]), int(r["beta"]), int(r["seed"])), places=6)
            self.assertEqual(r["attempts"], "1")
            self.assertEqual(GRID[int(r["index"])], (float(r["alpha"]), int(r["beta"]), int(r["seed"])))
        losses = [float(r["loss"]) for r in rows]
        self.assertEqual(losses, sorted(losses), "lowest loss first")

        outputs = {name: os.stat(os.path.join(self.work, name)).st_mtime_ns
                   for name in ("mux_id.txt", "sweep.txt", "results.h5", "losses.csv")}
        p = self.snakemake()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("Nothing to be done", p.stdout + p.stderr)
        self.assertEqual({name: os.stat(os.path.join(self.work, name)).st_mtime_ns for name in outputs}, outputs)
        self.assertEqual(len(os.listdir(os.path.join(self.work, "mux"))), 1, "one element set, made once")


    def test_a_run_interrupted_by_ctrl_c_resumes_its_session_when_run_again(self):
        # The task records each element it finishes in ran/ with noclobber, so an element run twice
        # fails; from element 30 on it waits for the file `gate`, so the interrupt finds 30 done.
        ran = os.path.join(self.work, "ran")
        os.mkdir(ran)
        task = os.path.join(self.work, "gated task.sh")
        with open(task, "w") as f:
            f.write('#!/bin/sh\ni=$1; shift\n'
                    'if [ "$i" -ge 30 ]; then while [ ! -e gate ]; do sleep 0.05; done; fi\n'
                    'set -C; : > "ran/$i"\n'
                    f'exec {shlex.quote(os.path.join(WORKFLOWS, "loss.sh"))} "$@"\n')
        os.chmod(task, 0o755)
        config = os.path.join(self.work, "config.yaml")
        with open(config, "w") as f:
            # A short lease: the next run takes over the batches of the interrupted one at once.
            yaml.safe_dump({"task": task, "task_args": "{#} {alpha} {beta} {seed}", "run_options": "--lease 2"}, f)

        # Ctrl-C: SIGINT to snakemake's process group, with mpirun in it.
        cmd = self.snakemake_command("--configfile", config)
        with open(os.path.join(self.tmp, "first.out"), "w") as out:
            first = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=WORKFLOW_ENV, start_new_session=True)
            try:
                while len(os.listdir(ran)) < 30 and first.poll() is None:
                    time.sleep(0.05)
                self.assertIsNone(first.poll(), "snakemake ended before the interrupt")
                os.killpg(first.pid, signal.SIGINT)
                self.assertNotEqual(first.wait(timeout=120), 0)
            finally:
                if first.poll() is None:
                    os.killpg(first.pid, signal.SIGKILL)
                    first.wait()
        mux_id = self.mux_id()
        self.assertEqual(self.stat(mux_id)["done"], 30)
        self.assertFalse(os.path.exists(os.path.join(self.work, "sweep.txt")))

        # Running the workflow again runs the sweep again, on the same session: the 30 left.
        open(os.path.join(self.work, "gate"), "w").close()
        p = self.snakemake("--configfile", config)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.mux_id(), mux_id)
        with open(os.path.join(self.work, "logs", "sweep.log")) as f:
            self.assertIn("mpmux: 30/30 elements (100.0%)", f.read())
        self.assertEqual(sorted(os.listdir(ran), key=int), [str(i) for i in range(60)])
        self.assertResultsH5(os.path.join(self.work, "results.h5"), ranks=3)


class Cwl(WorkflowTest):
    """plugins/workflows/cwl: session, run (cwltool:MPIRequirement), results."""

    def test_sweep_runs_to_completion_under_the_mpi_extension(self):
        # The shipped MPI configuration, with this build's mpiexec and --oversubscribe for a small machine.
        with open(os.path.join(CWL_DIR, "mpi-config.yml")) as f:
            mpi_config = yaml.safe_load(f)
        mpi_config["runner"] = MPIEXEC
        mpi_config["extra_flags"] = mpi_config["extra_flags"] + ["--oversubscribe"]
        mpi_config_file = os.path.join(self.work, "mpi config.yml")
        with open(mpi_config_file, "w") as f:
            yaml.safe_dump(mpi_config, f)

        with open(os.path.join(CWL_DIR, "sweep-job.yml")) as f:
            job = yaml.safe_load(f)
        job["mux_root"] = os.path.join(self.work, "mux")
        job["task"]["path"] = os.path.join(WORKFLOWS, "loss.sh")
        job_file = os.path.join(self.work, "job.yml")
        with open(job_file, "w") as f:
            yaml.safe_dump(job, f)

        out = os.path.join(self.work, "out")
        cmd = [sys.executable, "-m", "cwltool", "--enable-ext", "--mpi-config-file", mpi_config_file,
               "--no-container", "--outdir", out,
               "--tmpdir-prefix", os.path.join(self.work, "tmp", ""),
               "--tmp-outdir-prefix", os.path.join(self.work, "tmp-out", ""),
               os.path.join(CWL_DIR, "sweep.cwl"), job_file]
        p = subprocess.run(cmd, capture_output=True, text=True, env=WORKFLOW_ENV, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        outputs = json.loads(p.stdout)
        mux_id = outputs["mux_id"]
        self.assertIn("%20", mux_id)
        self.assertEqual(self.counts(mux_id), {"total": 60, "done": 60, "failed": 0, "running": 0, "pending": 0})
        with open(outputs["results"]["path"], newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([(float(r["alpha"]), int(r["beta"]), int(r["seed"])) for r in rows], GRID)
        for r in rows:
            self.assertEqual((r["status"], r["attempts"]), ("done", "1"))
            self.assertAlmostEqual(float(r["result"]), loss(float(r["alpha"]), int(r["beta"]), int(r["seed"])), places=6)
        self.assertEqual({r["rank"] for r in rows}, {"1", "2"})


if __name__ == "__main__":
    unittest.main()
