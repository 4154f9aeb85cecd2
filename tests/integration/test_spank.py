"""The SPANK plugin (plugins/slurm) on the local cluster, which scripts/start-slurm.sh brings up with
the plugin of this build installed (MPMUX_SPANK_PLUGIN; without it these tests fail):

- `sbatch --mux=ID slurm/farm.sbatch --exec ...`: the batch script and its `srun --mpi=pmix mpmux
  run` get no mux id on their command lines and run the session to done from MPMUX_ID.
- `sbatch --mux=` naming no session is refused by sbatch with mpmux's reason and Slurm's line
  about the option, and no job is queued; the same for srun and salloc.
- `#SBATCH --mux="ID"` in the script is checked and exported the same way; the srun steps of
  such a job do not check it again.
- `srun --mux` and `salloc --mux` with a good id export MPMUX_ID to what they start, also past an
  MPMUX_ID the environment had; `sbatch --export=NONE --mux` still gives the batch script MPMUX_ID.
- An az:// --mux (on Azurite) is checked with the submitter's AZURE_STORAGE_* environment.
- A check whose mpmux program cannot run, or does not answer within the plugin's timeout=, refuses
  the submission with one line saying so.
- `srun -n 2 mpmux run` without PMIx (--mpi=none; the cluster's MpiDefault is pmix) stops with
  one line naming --mpi=pmix, exit 2, and nothing done.
"""
import os
import secrets
import unittest

from mpmuxtest import ENV, MPMUX
from slurmtest import SOURCE, SlurmClusterTest, run
from test_azure_sessions import ACCOUNT, KEY, azurite_endpoint, blob_request

BAD_ID = "file:///nowhere#s=x"


class SpankTest(SlurmClusterTest):
    def submit(self, *args, env=None):
        """sbatch --parsable --output=JOB.out ARGS; the job is cancelled at the end. Returns (job id,
        its output file)."""
        out = os.path.join(self.tmp, "job-%j.out")
        p = run("sbatch", "--parsable", f"--output={out}", *args, env=env or self.env)
        self.assertEqual(p.returncode, 0, p.stderr)
        job = p.stdout.strip().split(";")[0]
        self.jobs.append(job)
        return job, out.replace("%j", job)

    def setUp(self):
        super().setUp()
        self.env = dict(ENV, MPMUX=MPMUX)
        self.env.pop("MPMUX_ID", None)

    def queued(self, name):
        p = run("squeue", "-h", "-n", name, "-o", "%i")
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.split()

    def assertRefused(self, p, program):
        """Exit non-zero, with mpmux's one line on the bad id and only Slurm's line about the option."""
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 2, p.stderr)
        self.assertRegex(lines[0], rf"^{program}: error: mpmux: --mux={BAD_ID}: mux directory '/nowhere' "
                                   r"does not exist")
        self.assertEqual(lines[1], f"{program}: error: Invalid --mux argument: {BAD_ID}")

    def test_a_job_submitted_with_mux_runs_the_session_to_done_without_a_mux_id_on_its_command_lines(self):
        n = 24
        _, mux_id = self.new_session("--range", n)
        log = os.path.join(self.tmp, "tasks.log")
        job, out = self.submit(f"--mux={mux_id}", "--ntasks=2", "--time=5", f"--chdir={self.tmp}",
                               os.path.join(SOURCE, "slurm", "farm.sbatch"), "--exec",
                               f"sh -c 'echo {{#}} $MPMUX_ID >> {log}'", "--root-works", "--progress-interval", 10,
                               env=dict(self.env, MPMUX_LAUNCHER="srun"))
        info = self.wait_job(job, out, timeout=120)
        text = self.output(out)
        print(f"\njob {job} (sbatch --mux, srun --mpi=pmix mpmux run --exec ...): {info['JobState']} exit "
              f"{info['ExitCode']}\n{text}", flush=True)
        self.assertEqual((info["JobState"], info["ExitCode"]), ("COMPLETED", "0:0"), text)
        self.assertIn("mpmux run: exit 0", text)
        with open(log) as f:
            ran = [line.split() for line in f if line.strip()]
        self.assertEqual(sorted(int(i) for i, _ in ran), list(range(n)), "each element exactly once")
        self.assertEqual({m for _, m in ran}, {mux_id}, "the tasks saw the job's MPMUX_ID")
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["failed"], st["pending"]), (n, 0, 0), st)

    def test_sbatch_refuses_a_mux_naming_no_session_and_queues_nothing(self):
        name = "mpmux-spank-" + secrets.token_hex(4)
        p = run("sbatch", f"--job-name={name}", f"--mux={BAD_ID}", f"--chdir={self.tmp}", "--output=/dev/null",
                "--wrap", "true", env=self.env)
        self.assertRefused(p, "sbatch")
        self.assertEqual(p.stdout, "")
        self.assertEqual(self.queued(name), [])

    def test_srun_and_salloc_refuse_a_mux_naming_no_session(self):
        self.assertRefused(run("srun", f"--mux={BAD_ID}", "-n", "1", "true", env=self.env), "srun")
        self.assertRefused(run("salloc", f"--mux={BAD_ID}", "-n", "1", "true", env=self.env), "salloc")

    def test_srun_and_salloc_accept_a_good_mux_and_export_it_as_mpmux_id(self):
        _, mux_id = self.new_session("--range", 3)
        # An MPMUX_ID the environment brings along gives way to --mux.
        env = dict(self.env, MPMUX_ID="file:///elsewhere#s=old")
        p = run("srun", f"--mux={mux_id}", "-n", "2", "printenv", "MPMUX_ID", env=env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), [mux_id, mux_id], p.stderr)
        # salloc runs its command here, and srun inside the allocation starts a step.
        p = run("salloc", f"--mux={mux_id}", "-n", "1", "sh", "-c", "printenv MPMUX_ID; srun printenv MPMUX_ID",
                env=env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), [mux_id, mux_id], p.stderr)

    def test_a_batch_script_of_a_job_with_export_none_gets_mpmux_id(self):
        _, mux_id = self.new_session("--range", 3)
        job, out = self.submit("--export=NONE", f"--mux={mux_id}", "--ntasks=1", "--wrap", "/usr/bin/printenv MPMUX_ID")
        info = self.wait_job(job, out, timeout=60)
        self.assertEqual((info["JobState"], info["ExitCode"]), ("COMPLETED", "0:0"), self.output(out))
        self.assertEqual(self.output(out).split(), [mux_id])

    def test_a_quoted_mux_in_an_sbatch_line_of_the_script_is_checked_and_exported(self):
        # sbatch reads an unquoted '#' in a #SBATCH line as the start of a comment.
        script = self.write("bad.sbatch", f'#!/bin/bash\n#SBATCH --mux="{BAD_ID}"\ntrue\n')
        self.assertRefused(run("sbatch", f"--chdir={self.tmp}", "--output=/dev/null", script, env=self.env), "sbatch")
        _, mux_id = self.new_session("--range", 3)
        script = self.write("good.sbatch", f'#!/bin/bash\n#SBATCH --mux="{mux_id}"\n/usr/bin/printenv MPMUX_ID\n')
        job, out = self.submit(script)
        info = self.wait_job(job, out, timeout=60)
        self.assertEqual((info["JobState"], info["ExitCode"]), ("COMPLETED", "0:0"), self.output(out))
        self.assertEqual(self.output(out).split(), [mux_id])

    def test_an_az_session_is_checked_with_the_key_of_the_submitting_environment(self):
        container = "spank" + secrets.token_hex(8)
        status, body = blob_request("PUT", f"/{container}", {"restype": "container"})
        self.assertEqual(status, 201, body)
        self.addCleanup(blob_request, "DELETE", f"/{container}", {"restype": "container"})
        env = dict(self.env, AZURE_STORAGE_BLOB_ENDPOINT=azurite_endpoint(), AZURE_STORAGE_KEY=KEY,
                   MPMUX_CACHE=os.path.join(self.tmp, "cache"))
        env.pop("AZURE_STORAGE_CONNECTION_STRING", None)
        mux = run(MPMUX, "new", f"az://{ACCOUNT}/{container}/sweeps", "--range", 3, env=env)
        self.assertEqual(mux.returncode, 0, mux.stderr)
        p = run(MPMUX, "session", mux.stdout.strip(), env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        mux_id = p.stdout.strip()
        p = run("srun", f"--mux={mux_id}", "-n", "1", "printenv", "MPMUX_ID", env=env, timeout=60)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, mux_id), p.stderr)
        missing = mux_id.rsplit("=", 1)[0] + "=20990101T000000Z-0000"
        p = run("srun", f"--mux={missing}", "-n", "1", "true", env=env, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 2, p.stderr)
        self.assertTrue(lines[0].startswith(f"srun: error: mpmux: --mux={missing}: "), lines[0])
        self.assertIn("20990101T000000Z-0000", lines[0][len(f"srun: error: mpmux: --mux={missing}: "):])
        # Without the key, the same good id is refused: the check reads the session with the
        # submitter's credentials.
        no_key = {k: v for k, v in env.items() if k != "AZURE_STORAGE_KEY"}
        p = run("srun", f"--mux={mux_id}", "-n", "1", "true", env=no_key, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertRegex(p.stderr.splitlines()[0], rf"^srun: error: mpmux: --mux={mux_id}: .*AZURE_STORAGE")

    def with_plugin_arguments(self, *arguments):
        """Rewrites the plugin's plugstack.conf.d line with other arguments until the test ends."""
        conf = os.path.join(os.path.dirname(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")),
                            "plugstack.conf.d", "mpmux.conf")
        with open(conf) as f:
            original = f.read()
        lines = original.splitlines()
        plugin = lines[-1].split()[1]

        def restore():
            with open(conf, "w") as f:
                f.write(original)

        self.addCleanup(restore)
        with open(conf, "w") as f:
            f.write("\n".join(lines[:-1] + [" ".join(["optional", plugin, *arguments])]) + "\n")

    def test_a_check_that_cannot_run_or_does_not_answer_refuses_the_submission_in_one_line(self):
        _, mux_id = self.new_session("--range", 3)
        missing = os.path.join(self.tmp, "no-mpmux")
        self.with_plugin_arguments(f"mpmux={missing}")
        p = run("sbatch", f"--mux={mux_id}", f"--chdir={self.tmp}", "--output=/dev/null", "--wrap", "true",
                env=self.env)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertEqual(p.stderr.splitlines()[0], f"sbatch: error: mpmux: --mux={mux_id}: cannot check the "
                         f"session: cannot run '{missing}': No such file or directory (plugstack.conf: mpmux=PATH)")
        silent = self.write("silent-mpmux", "#!/bin/sh\nexec sleep 60\n")
        os.chmod(silent, 0o755)
        self.with_plugin_arguments(f"mpmux={silent}", "timeout=1")
        p = run("sbatch", f"--mux={mux_id}", f"--chdir={self.tmp}", "--output=/dev/null", "--wrap", "true",
                env=self.env)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertEqual(p.stderr.splitlines()[0], f"sbatch: error: mpmux: --mux={mux_id}: `{silent} check` did "
                         "not answer within 1 s (plugstack.conf: timeout=SECONDS)")

    def test_the_steps_of_a_job_submitted_with_mux_do_not_check_the_session_again(self):
        _, mux_id = self.new_session("--range", 3)
        go = os.path.join(self.tmp, "go")
        script = self.write("steps.sbatch", f"#!/bin/bash\nwhile [ ! -e {go} ]; do sleep 0.1; done\n"
                                            "srun -n 1 printenv MPMUX_ID\n")
        job, out = self.submit(f"--mux={mux_id}", "-n", "1", script)
        # From here on a check fails: the step's srun must not run one.
        self.with_plugin_arguments(f"mpmux={os.path.join(self.tmp, 'no-mpmux')}")
        self.write("go", "")
        info = self.wait_job(job, out, timeout=60)
        self.assertEqual((info["JobState"], info["ExitCode"]), ("COMPLETED", "0:0"), self.output(out))
        self.assertEqual(self.output(out).split(), [mux_id])

    def test_srun_without_pmix_stops_with_one_line_naming_mpi_pmix(self):
        _, mux_id = self.new_session("--range", 6)
        p = run("srun", "--mpi=none", "-n", "2", MPMUX, "run", mux_id, "--exec", "true", env=self.env, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        ours = [line for line in p.stderr.splitlines() if line.startswith("mpmux: ")]
        self.assertEqual(len(ours), 1, p.stderr)
        self.assertIn("srun started 2 tasks", ours[0])
        self.assertIn("srun --mpi=pmix", ours[0])
        self.assertRegex(p.stderr, r"tasks 0-1: Exited with exit code 2")
        st = self.stat(mux_id)
        self.assertEqual((st["done"], st["pending"]), (0, 6), st)
        self.assertEqual(st["participants"], [], "no run joined the session")


if __name__ == "__main__":
    unittest.main()
