"""Workflow managers running mpmux: the Snakemake workflow and the CWL workflow of plugins/workflows/,
run to completion (their MPI step under mpirun) in a folder with a space in its name, run again with
nothing to do, and run again after an interrupt to finish the same session."""
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

# The grid of snakemake/config.yaml and cwl/sweep-job.yml, in the order `mpmux new --grid` stores it.
GRID = list(itertools.product([0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 3, 4], [1, 2, 3]))

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
        self.ran = os.path.join(self.work, "ran")

    def write_gated_task(self):
        """A task that records each element it finishes in ran/ with noclobber, so that an element run
        twice fails, and that from element 30 on waits for the file `gate`: an interrupt then finds
        30 elements done. Its arguments: the element's index, then loss.sh's."""
        os.mkdir(self.ran)
        task = os.path.join(self.work, "gated task.sh")
        with open(task, "w") as f:
            f.write("#!/bin/sh\ni=$1; shift\n"
                    f"if [ \"$i\" -ge 30 ]; then\n"
                    f"  while [ ! -e {shlex.quote(self.gate())} ]; do sleep 0.05; done\n"
                    "fi\n"
                    f"set -C; : > {shlex.quote(self.ran)}/\"$i\"\n"
                    f"exec {shlex.quote(os.path.join(WORKFLOWS, 'loss.sh'))} \"$@\"\n")
        os.chmod(task, 0o755)
        return task

    def gate(self):
        return os.path.join(self.work, "gate")

    def interrupt_after_30(self, cmd, log):
        """Runs cmd and sends it Ctrl-C (SIGINT to its process group, mpirun in it) once the gated task
        has finished 30 elements; the workflow manager must then fail."""
        with open(log, "w") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=WORKFLOW_ENV,
                                 start_new_session=True)
            try:
                while len(os.listdir(self.ran)) < 30 and p.poll() is None:
                    time.sleep(0.05)
                self.assertIsNone(p.poll(), "the workflow ended before the interrupt")
                os.killpg(p.pid, signal.SIGINT)
                self.assertNotEqual(p.wait(timeout=120), 0)
            finally:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()

    def assertEveryElementRanOnce(self):
        self.assertEqual(sorted(os.listdir(self.ran), key=int), [str(i) for i in range(len(GRID))])

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

    def assertResultsCsv(self, path, ranks):
        """The CSV export of the sweep's session: the same promises as assertResultsH5."""
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([(float(r["alpha"]), int(r["beta"]), int(r["seed"])) for r in rows], GRID)
        self.assertEqual([int(r["index"]) for r in rows], list(range(len(GRID))))
        for r in rows:
            self.assertEqual((r["status"], r["attempts"]), ("done", "1"))
            self.assertAlmostEqual(float(r["result"]), loss(*GRID[int(r["index"])]), places=6)
        self.assertEqual({int(r["rank"]) for r in rows}, set(range(1, ranks)))

    def assertAllDone(self, mux_id):
        self.assertIn("%20", mux_id, "the mux root lies in the folder with a space in its name")
        self.assertEqual(self.counts(mux_id),
                         {"total": 60, "done": 60, "failed": 0, "running": 0, "pending": 0})


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

        self.assertAllDone(self.mux_id())
        with open(os.path.join(self.work, "sweep.txt")) as f:
            self.assertEqual(f.read(), "60 of 60 elements done\n")
        self.assertResultsH5(os.path.join(self.work, "results.h5"), ranks=3)

        with open(os.path.join(self.work, "losses.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(sorted(int(r["index"]) for r in rows), list(range(len(GRID))))
        for r in rows:
            self.assertEqual(GRID[int(r["index"])], (float(r["alpha"]), int(r["beta"]), int(r["seed"])))
            self.assertAlmostEqual(float(r["loss"]), loss(*GRID[int(r["index"])]), places=6)
            self.assertEqual(r["attempts"], "1")
        losses = [float(r["loss"]) for r in rows]
        self.assertEqual(losses, sorted(losses), "lowest loss first")

        outputs = {name: os.stat(os.path.join(self.work, name)).st_mtime_ns
                   for name in ("mux_id.txt", "sweep.txt", "results.h5", "losses.csv")}
        p = self.snakemake()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("Nothing to be done", p.stdout + p.stderr)
        self.assertEqual({name: os.stat(os.path.join(self.work, name)).st_mtime_ns for name in outputs},
                         outputs)
        self.assertEqual(len(os.listdir(os.path.join(self.work, "mux"))), 1, "one element set, made once")

    def test_a_run_interrupted_by_ctrl_c_resumes_its_session_when_run_again(self):
        config = os.path.join(self.work, "config.yaml")
        with open(config, "w") as f:
            # A short lease: the next run takes over the batches of the interrupted one at once.
            yaml.safe_dump({"task": self.write_gated_task(), "task_args": "{#} {alpha} {beta} {seed}",
                            "run_options": "--lease 2"}, f)

        self.interrupt_after_30(self.snakemake_command("--configfile", config),
                                os.path.join(self.tmp, "first.out"))
        mux_id = self.mux_id()
        self.assertEqual(self.stat(mux_id)["done"], 30)
        self.assertFalse(os.path.exists(os.path.join(self.work, "sweep.txt")))

        # Running the workflow again runs the sweep again, on the same session: the 30 left.
        open(self.gate(), "w").close()
        p = self.snakemake("--configfile", config)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.mux_id(), mux_id)
        with open(os.path.join(self.work, "logs", "sweep.log")) as f:
            self.assertIn("mpmux: 30/30 elements (100.0%)", f.read())
        self.assertEveryElementRanOnce()
        self.assertAllDone(mux_id)
        self.assertResultsH5(os.path.join(self.work, "results.h5"), ranks=3)


class Cwl(WorkflowTest):
    """plugins/workflows/cwl: session, run (cwltool:MPIRequirement), results."""

    def setUp(self):
        super().setUp()
        # The shipped MPI configuration, with this build's mpiexec and --oversubscribe for a small machine.
        with open(os.path.join(CWL_DIR, "mpi-config.yml")) as f:
            mpi_config = yaml.safe_load(f)
        mpi_config["runner"] = MPIEXEC
        mpi_config["extra_flags"] = mpi_config["extra_flags"] + ["--oversubscribe"]
        self.mpi_config = os.path.join(self.work, "mpi config.yml")
        with open(self.mpi_config, "w") as f:
            yaml.safe_dump(mpi_config, f)

    def write_job(self, **changes):
        """The shipped sweep-job.yml with the set stored in the work folder, and changes."""
        with open(os.path.join(CWL_DIR, "sweep-job.yml")) as f:
            job = yaml.safe_load(f)
        job["mux_root"] = os.path.join(self.work, "mux")
        job["task"]["path"] = os.path.join(WORKFLOWS, "loss.sh")
        job.update(changes)
        path = os.path.join(self.work, "job.yml")
        with open(path, "w") as f:
            yaml.safe_dump(job, f)
        return path

    def cwltool_command(self, job, out):
        # --cachedir: a step that succeeded is not run again, so the session step of a second run gives
        # the same mux id. Temporary folders in the work folder too, so that the MPI step's TMPDIR and
        # working directory have a space in their names. --relax-path-checks: cwltool refuses a File
        # input with a space in its name without it.
        return [sys.executable, "-m", "cwltool", "--enable-ext", "--mpi-config-file", self.mpi_config,
                "--no-container", "--relax-path-checks", "--cachedir", os.path.join(self.work, "cache"),
                "--outdir", out, "--tmpdir-prefix", os.path.join(self.work, "tmp", ""),
                os.path.join(CWL_DIR, "sweep.cwl"), job]

    def cwltool(self, job, out):
        p = subprocess.run(self.cwltool_command(job, out), capture_output=True, text=True, env=WORKFLOW_ENV,
                           timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return json.loads(p.stdout), p.stderr

    def test_sweep_runs_to_completion_under_the_mpi_extension(self):
        job = self.write_job()
        outputs, _ = self.cwltool(job, os.path.join(self.work, "out"))
        mux_id = outputs["mux_id"]
        self.assertAllDone(mux_id)
        self.assertResultsCsv(outputs["results"]["path"], ranks=3)
        with open(outputs["run_log"]["path"]) as f:
            self.assertIn("mpmux: 60/60 elements (100.0%)", f.read())

        # Again, with the same inputs: every step comes from the cache, the session is the same.
        again, log = self.cwltool(job, os.path.join(self.work, "out again"))
        self.assertEqual(again["mux_id"], mux_id)
        self.assertNotIn("mpmux run", log)
        self.assertEqual(len(os.listdir(os.path.join(self.work, "mux"))), 1, "one element set, made once")

    def test_a_run_interrupted_by_ctrl_c_resumes_its_session_when_run_again(self):
        task = self.write_gated_task()
        job = self.write_job(task={"class": "File", "path": task},
                             exec="'./gated task.sh' {#} {alpha} {beta} {seed}", run_options=["--lease", "2"])
        self.interrupt_after_30(self.cwltool_command(job, os.path.join(self.work, "out")),
                                os.path.join(self.tmp, "first.out"))
        (mux_dir,) = os.listdir(os.path.join(self.work, "mux"))
        (session,) = os.listdir(os.path.join(self.work, "mux", mux_dir, "sessions"))

        open(self.gate(), "w").close()
        outputs, _ = self.cwltool(job, os.path.join(self.work, "out"))
        self.assertTrue(outputs["mux_id"].endswith("#s=" + session), "the session of the interrupted run")
        with open(outputs["run_log"]["path"]) as f:
            self.assertIn("mpmux: 30/30 elements (100.0%)", f.read())
        self.assertEveryElementRanOnce()
        self.assertAllDone(outputs["mux_id"])
        self.assertResultsCsv(outputs["results"]["path"], ranks=3)


if __name__ == "__main__":
    unittest.main()
