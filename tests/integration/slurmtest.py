"""What the tests on the local Slurm cluster share: bringing the cluster up (scripts/start-slurm.sh,
which also installs the SPANK plugin named by MPMUX_SPANK_PLUGIN), Slurm's record of a job, and
waiting for a job to end."""
import os
import re
import subprocess
import time

from mpmuxtest import ENV, TempDirTest

SOURCE = os.environ.get("MPMUX_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
# Job states after which Slurm does nothing more with a job (a requeued job passes through
# REQUEUED and PENDING, which are not final).
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED"}


def run(*cmd, timeout=30, env=None):
    return subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=timeout,
                          env=env or ENV)


def job_info(job):
    """scontrol's record of a job as a dict (JobState, ExitCode, StartTime, ...)."""
    p = run("scontrol", "-o", "show", "job", job)
    if p.returncode != 0:
        raise AssertionError(f"scontrol show job {job}: exit {p.returncode}: {p.stderr.strip()}")
    return dict(re.findall(r"(\w+)=(\S*)", p.stdout))


class SlurmClusterTest(TempDirTest):
    """A test on the local cluster; the jobs it lists in self.jobs are cancelled after it."""

    @classmethod
    def setUpClass(cls):
        p = run(os.path.join(SOURCE, "scripts", "start-slurm.sh"), timeout=180)
        if p.returncode != 0:
            raise AssertionError(f"scripts/start-slurm.sh: exit {p.returncode}\n{p.stdout}{p.stderr}")
        print(f"\n{p.stdout.strip()}", flush=True)

    def setUp(self):
        super().setUp()
        self.jobs = []

    def tearDown(self):
        # A job a failed test left behind would hold the node for the next test.
        for job in self.jobs:
            run("scancel", job)
        super().tearDown()

    def output(self, path):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return "(no output file)"

    def wait_job(self, job, out, timeout):
        """Polls Slurm until the job is over (Slurm tells no one); returns its final record."""
        end = time.monotonic() + timeout
        while True:
            info = job_info(job)
            if info.get("JobState") in FINAL:
                return info
            if time.monotonic() > end:
                run("scancel", job)
                raise AssertionError(f"job {job} not over within {timeout} s (state {info.get('JobState')}, "
                                     f"reason {info.get('Reason')})\n{self.output(out)}")
            time.sleep(0.5)
